"""Job scripts from Slurm, PBS and Grid Engine: what each public example in tests/data/scripts must become."""

from __future__ import annotations

import pytest

from compat_expected import EXPECTED, SCRIPTS
from wulf.compat import slurm
from wulf.compat.directives import dialect_of, read, submit_env, with_shell
from wulf.compat.request import DirectiveError, Request, Where, size_mb, words


def where(name: str) -> Where:
    return Where(submit_dir="/sub", home="/home/u", script_name=name, user="u")


def parse(name: str) -> Request:
    return read((SCRIPTS / name).read_text(), where(name))


def test_every_script_is_checked() -> None:
    files = {p.name for p in SCRIPTS.iterdir()}
    assert files == set(EXPECTED) and len(files) >= 30
    for p in SCRIPTS.iterdir():
        assert "Source:" in p.read_text() or "Written for these tests" in p.read_text(), p.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_script_becomes(name: str) -> None:
    fields, strict_notes = EXPECTED[name]
    if "error" in fields and fields["error"] and fields["error"].startswith("line "):
        with pytest.raises(DirectiveError) as e:
            parse(name)
        assert e.value.message.startswith(fields["error"])
        return
    req = parse(name)
    for key, value in fields.items():
        assert getattr(req, key) == value, key
    assert {n.directive for n in req.notes if n.strict} == strict_notes


def test_dialect_of_and_other_prefixes() -> None:
    assert dialect_of("#!/bin/sh\n##SBATCH -c 2\n#PBS -N x\n") == "pbs"
    assert dialect_of("#!/bin/sh\necho\n#SBATCH -c 2\n") == ""  # after the first command: not a directive
    assert dialect_of("#!/bin/sh\necho\n#$ -pe smp 2\n") == "sge"  # Grid Engine reads the whole script
    req = read("#!/bin/sh\n#SBATCH -c 2\n#PBS -l ncpus=8\n", where("x"))
    assert req.dialect == "slurm" and req.cpu == 2.0
    assert [(n.directive, n.strict) for n in req.notes] == [("#PBS", False)]
    assert read("echo hi\n", where("x")) == Request(dialect="")


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 5400), ("10:30", 630), ("1:00:00", 3600), ("2-0", 172800), ("1-2:30", 95400), ("1-00:00:01", 86401),
    ("0", None), ("UNLIMITED", None), ("infinite", None),
])
def test_slurm_time_formats(text: str, seconds: float | None) -> None:
    assert slurm.time_seconds(text) == seconds


@pytest.mark.parametrize("text", ["1h", "1:2:3:4", "-5", "1-", "a-1", ""])
def test_slurm_time_rejects(text: str) -> None:
    with pytest.raises(DirectiveError, match="not a Slurm time"):
        slurm.time_seconds(text)


def test_words() -> None:
    assert words(' --output=a#b  -J "two words" # a comment') == ["--output=a#b", "-J", "two words"]
    assert words("-v A='x y',B=1") == ["-v", "A=x y,B=1"]
    with pytest.raises(DirectiveError, match="quotes"):
        words('-N "open')


def test_sizes() -> None:
    assert size_mb("1000", "m", "x") == 1000 and size_mb("2G", "m", "x") == 2048
    assert size_mb("8gb", "b", "x") == 8192 and size_mb("1048576", "b", "x") == 1.0
    assert size_mb("0.5G", "b", "x") == 512 and size_mb("1024kb", "b", "x") == 1.0
    for bad in ("lots", "0", "-1G", "2X"):
        with pytest.raises(DirectiveError):
            size_mb(bad, "m", "--mem")


def test_bad_values_say_where() -> None:
    cases = {
        "#SBATCH --time=soon\n": "line 1: #SBATCH --time: 'soon' is not a Slurm time",
        "#SBATCH --mem=2G --mem-per-cpu=1G\n": "--mem and --mem-per-cpu",
        "#SBATCH -c\n": "line 1: #SBATCH -c needs a value",
        "#PBS -l walltime=1h\n": "line 1: #PBS -l walltime: '1h' is not a duration",
        "#PBS -j xy\n": "line 1: #PBS -j: 'xy' is not oe, eo or n",
        "#PBS -S bash\n": "not the absolute path of a shell",
        "#$ -pe smp\n": "line 1: #$ -pe needs two values",
        "#$ -l h_vmem=much\n": "line 1: #$ -l h_vmem: 'much' is not a size",
        "#SBATCH --export=ALL,1X=2\n": "line 1: #SBATCH --export: '1X' is not a variable name",
        "#PBS -v A-B=1\n": "line 1: #PBS -v: 'A-B' is not a variable name",
    }
    for text, message in cases.items():
        with pytest.raises(DirectiveError) as e:
            read(text, where("x"))
        assert message in e.value.message, text


def test_every_slurm_option_is_handled() -> None:
    for name, opt in slurm.LONG.items():
        value = {"none": "", "optional": ""}.get(opt.arity, {"export": "ALL", "mail-type": "ALL"}.get(name, "1"))
        read(f"#SBATCH --{name}{'=' + value if value else ''}\n", where("x"))


def test_pbs_and_sge_outputs() -> None:
    req = read("#PBS -N run\n#PBS -j eo\n", where("x"))
    assert req.output == "/sub/run.e%j" and req.error is None and not req.notes
    req = read("#$ -N a%b\n#$ -o $HOME/o.$JOB_NAME.$JOB_ID.$TASK_ID.${USER}\n", where("x"))
    assert req.output == "/home/u/o.a%%b.%j.undefined.%u" and req.cwd == "/home/u"
    req = read("#PBS -v A=1,B\n#PBS -o host:/logs/x.out\n", where("job.pbs"))
    assert req.env == "ALL,A=1,B" and req.output == "/logs/x.out" and req.name is None


def test_submit_env_and_shell() -> None:
    w = where("x")
    env = {"HOME": "/home/u", "PATH": "/bin", "SECRET": "s"}
    assert submit_env("slurm", w, "login1", env) == {"SLURM_SUBMIT_DIR": "/sub", "SLURM_SUBMIT_HOST": "login1"}
    assert submit_env("pbs", w, "login1", env) == {"PBS_O_WORKDIR": "/sub", "PBS_O_HOST": "login1",
                                                   "PBS_O_HOME": "/home/u", "PBS_O_PATH": "/bin"}
    assert submit_env("", w, "login1", env) == {}
    assert with_shell("#!/bin/csh\necho\n", "/bin/bash") == "#!/bin/bash\necho\n"
    assert with_shell("echo\n", "/bin/bash") == "#!/bin/bash\necho\n"
    assert with_shell("echo\n", None) == "echo\n"


def test_pbs_node_properties_and_queues() -> None:
    req = read("#PBS -l nodes=1:ppn=16:bigmem:ssd -q batch@server1\n", where("x"))
    assert (req.cpu, req.constraint, req.queue, req.notes) == (16.0, "bigmem,ssd", "batch", [])
    req = read("#PBS -l nodes=dijon03:ppn=1,walltime=10000:00\n", where("x"))
    assert req.time_limit == 10000 * 60.0 and [n.directive for n in req.notes] == ["#PBS -l nodes=dijon03"]
    req = read("#PBS -lselect=2:ncpus=3:mem=1gb+1:ncpus=2 -l place=scatter\n", where("x"))
    assert (req.cpu, req.mem_mb, req.nodes, req.ntasks, req.tasks_per_node) == (1.0, 256.0, 3, 8, None)
    assert {n.directive for n in req.notes} == {"#PBS -l select=2:ncpus=3:mem=1gb+1:ncpus=2", "#PBS -l place=scatter"}
    req = read("#$ -q cpu-e.q@* -pe smp 2-8 -l h_rt=INFINITY\n", where("x"))
    assert (req.queue, req.cpu, req.time_limit, req.notes) == ("cpu-e.q", 2.0, None, [])


def test_wulf_lines_alone() -> None:
    req = read("#!/bin/sh\n# a comment\n#WULF --cpu 2\n#WULF --mem 1G  # trailing\necho\n#WULF --cpu 9\n", where("x"))
    assert (req.dialect, req.wulf_args) == ("", ["--cpu", "2", "--mem", "1G"])


def test_pbs_depend_takes_ids_as_qsub_printed_them() -> None:
    """Open OnDemand's PBS adapter passes the ids qsub gave it, ``12.server``, and several dependency types
    in one ``-W depend=``, separated by commas."""
    req = read("#PBS -W depend=afterok:12.login1:13.login1.example.org,afterany:14[].login1:15\n", where("x"))
    assert req.dependency == "afterok:12:13,afterany:14:15" and not req.notes
    req = read("#PBS -W depend=afterok:12,umask=022\n", where("x"))
    assert req.dependency == "afterok:12" and [n.directive for n in req.notes] == ["#PBS -W umask"]
