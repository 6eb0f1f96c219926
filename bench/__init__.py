"""wulf's benchmark: `./dev bench` (or `python -m bench`)."""
