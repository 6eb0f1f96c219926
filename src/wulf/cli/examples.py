"""The examples at the end of every command's ``--help`` (and of its manual page), by the command's prog.

A parser that sets an epilog of its own keeps it. Read only when help is shown: no command pays for it
at start.
"""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
    "wulf": """examples:
  wulf up -d                        # a server and an agent on this machine, in the background
  wulf init --host master.example.org   # as root on the master: key, CA, certificate, wulf.toml
  wulf doctor                       # is this machine set up right?
  wulf COMMAND --help               # each command's options and examples
""",
    "wulf up": """examples:
  wulf up                           # runs until Ctrl-C
  wulf up -d --cpus 4 --mem 8G      # in the background, offering 4 cpus and 8 GB
  wulf up -d --listen 127.0.0.1:8080   # the web interface and HTTP API on this port (none with '')
""",
    "wulf web": """examples:
  wulf web                          # the web interface's address and a sign-in link (once, 10 minutes)
""",
    "wulf down": """examples:
  wulf down
  wulf down --state /tmp/mycluster
""",
    "wulf server": """examples:
  wulf server                       # as root on the master, with /etc/wulf/wulf.toml
  wulf server --state /var/lib/wulf --listen :7878 -v
  wulf server --log-file /var/log/wulf/server.log
""",
    "wulf agent": """examples:
  wulf agent                        # as root on a node, with /etc/wulf/wulf.toml
  wulf agent --name node7 --cpus 8 --mem 16G
  wulf agent --server https://master.example.org:7878 --scratch /scratch
""",
    "wulf config": """examples:
  wulf config                       # the configuration in effect, every key
  wulf --config /etc/wulf/test.toml config --json
""",
    "wulf sim": """examples:
  wulf sim                          # the mixed scenario: 100 nodes, 10000 jobs
  wulf sim --scenario flood --compare
  wulf sim --nodes 1000 --jobs 100000 --json
  wulf sim --workload examples/sim-workload.jsonl --plot run.png
""",
    "wulf token": """examples:
  wulf token create --name dashboard --read-only --days 90
  wulf token list
  wulf token revoke 3
""",
    "wulf token create": """examples:
  wulf token create --name ci --days 30
  WULF_TOKEN=$(wulf token create --read-only) jstat
""",
    "wulf token list": """examples:
  wulf token list
  wulf token list --json
""",
    "wulf token revoke": """examples:
  wulf token revoke 3
""",
    "wulf init": """examples:
  wulf init --host master.example.org --host 10.0.0.1
  wulf init --dir /tmp/newcluster --port 7979
""",
    "wulf purge-scratch": """examples:
  wulf purge-scratch --dry-run           # what would go, and the space it would free
  wulf purge-scratch --hours 24          # as root, on a node: what is unused for a day
  wulf purge-scratch --scratch /scratch --json
""",
    "wulf version": """examples:
  wulf version
""",
    "wulf man": """examples:
  wulf man qr | man -l -            # read qr's manual page
  wulf man --write /usr/local/share/man
""",
    "wulf completion": """examples:
  source <(wulf completion bash)    # in ~/.bashrc
  wulf completion zsh > "${fpath[1]}/_wulf"
  wulf completion fish > ~/.config/fish/completions/wulf.fish
""",
    "wulf runall": """examples:
  wulf runall uptime                               # every node, each line after its node's name
  wulf runall -n n1,n2 --timeout 300 -- apt-get -y upgrade
  wulf runall --features gpu --group nvidia-smi -L   # nodes with feature gpu; same outputs shown once
""",
    "wulf launch": """examples:
  wulf launch ./worker                             # in a job of qr --ntasks 6: six workers on its nodes
  wulf launch -n 3 -l hostname                     # three tasks, each line after its task's id
""",
    "jrun": """examples:
  jrun ./worker                                    # as wulf launch: one task a slot of the job
  jrun -n 2 -- sh -c 'echo $WULF_TASK_ID on $WULF_NODE'
""",
    "wulf-rsh": """examples:
  wulf-rsh node2 hostname                          # inside a job on node[1-3]: node2 is one of its nodes
  mpiexec -launcher rsh -launcher-exec wulf-rsh -n 6 ./hello   # (set for you in a job of several nodes)
""",
    "wulf compat": """examples:
  wulf compat ~/wulf-compat && export PATH=~/wulf-compat:$PATH   # then sbatch, squeue, qsub... are wulf's
  sudo wulf compat /opt/wulf/compat-bin            # for a site: put it on users' PATH (or in a module)
  WULF_COMPAT_FLAVOUR=sge qstat                    # Grid Engine's qsub/qstat/qdel instead of PBS's
""",
    "wulf doctor": """examples:
  wulf doctor                       # on any machine of the cluster
  wulf --config /etc/wulf/wulf.toml doctor --json
""",
    "wulf install": """examples:
  wulf install server               # as root on the master
  wulf install node --server https://master.example.org:7878
  wulf install client --dry-run     # only say what it would write
""",
    "wulf uninstall": """examples:
  wulf uninstall                    # remove what `wulf install` wrote (not the job database)
""",
    "jr": """examples:
  jr make -j4                       # on the best node, attached to this terminal
  jr --cpu 4 --mem 8G matlab -nodisplay
  jr --name render blender -b scene.blend
""",
    "jstat": """examples:
  jstat                             # nodes and jobs
  jstat -a -u alice                 # alice's jobs, also the ones that ended
  jstat --queues                    # the queues, and why their jobs wait
  jstat --json | jq '.jobs[].id'
""",
    "qwait": """examples:
  qwait                             # until all your jobs have ended
  qwait 12 13 --timeout 600
  qwait --quiet --json
""",
    "qcancel": """examples:
  qcancel 12                        # cancel job 12, waiting or running
  qcancel $(jstat --json | jq '.jobs[].id')
""",
    "jkill": """examples:
  jkill 12                          # TERM to every process of job 12
  jkill -s KILL 12 13
  jkill -s USR1 12                  # e.g. ask it to checkpoint
""",
    "jnice": """examples:
  jnice 12 10                       # job 12 now runs at nice 10
""",
    "jmod": """examples:
  jmod 12 --cpu 4 --mem 8G          # job 12, waiting, now asks for 4 cpus and 8 GB
  jmod 12 13 -q night               # move them to your queue 'night' (in the order they were queued)
  jmod 12 --after 10 / --after none # wait for job 10 (done) instead / for nothing
  jmod 20 --throttle 10             # array 20 runs at most 10 tasks at once from now on
  jmod 12 --time 1:00:00            # a running job's time limit, lowered: stopped once it has run an hour
""",
    "jobmgr": """examples:
  jobmgr drain node7                # no new jobs on node7; running ones go on
  jobmgr resume node7
  jobmgr reload                     # read /etc/wulf/wulf.toml again
""",
    "jobmgr reload": "examples:\n  jobmgr reload\n",
    "jobmgr drain": "examples:\n  jobmgr drain node7\n",
    "jobmgr resume": "examples:\n  jobmgr resume node7\n",
    "jobmgr quitnode": "examples:\n  jobmgr quitnode node7\n",
    "jobmgr quitjobd": "examples:\n  jobmgr quitjobd\n",
    "qhold": """examples:
  qhold 12 13                       # they keep their place in line but do not start
""",
    "qrls": """examples:
  qrls 12 13
""",
    "jtail": """examples:
  jtail 12                          # the last 10 lines of job 12's output
  jtail -f 12                       # follow it until job 12 ends (then exit 0)
  jtail -c 4096 12                  # its last 4 KiB
""",
    "jacct": """examples:
  jacct                             # your jobs that ended today
  jacct -S now-7days                # ... in the last week (also: -S -7d, -S 2026-12-01T10:00)
  jacct -u alice -S 2026-12-01 -E 2026-12-08 --state failed
  jacct -a --summary -S -30d        # every user's totals over 30 days: jobs, cpu hours, wait, efficiency
  jacct 12 13 --csv > jobs.csv
""",
    "jeff": """examples:
  jeff 12                           # how well job 12 used the cpus and memory it asked for
""",
}
