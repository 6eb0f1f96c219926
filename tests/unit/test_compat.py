"""Job scripts from Slurm, PBS and Grid Engine: what each public example in tests/data/scripts must become."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wulf.compat import slurm
from wulf.compat.directives import dialect_of, read, submit_env, with_shell
from wulf.compat.request import DirectiveError, Request, Where, size_mb, words

SCRIPTS = Path(__file__).parent.parent / "data" / "scripts"
H = 3600.0


def where(name: str) -> Where:
    return Where(submit_dir="/sub", home="/home/u", script_name=name, user="u")


def parse(name: str) -> Request:
    return read((SCRIPTS / name).read_text(), where(name))


# what each script must become: fields of the request, and the directives noted as not carried out (those
# qr --strict refuses); every script in the folder is here
EXPECTED: dict[str, tuple[dict[str, Any], set[str]]] = {
    "slurm_array_basic.sh": (dict(dialect="slurm", name="array_job_test", cpu=1.0, mem_mb=1024.0, time_limit=300.0,
                                  output="array_%A-%a.out", array="1-5", mail_type="ALL"),
                             set()),
    "slurm_array_brown.sh": (dict(name="arrayjob", time_limit=600.0, output="arrayjob-%a.out", error="arrayjob-%a.err",
                                  array="1-2", default_output="slurm-%A_%a.out"),
                             {"#SBATCH --error"}),
    "slurm_array_nonsequential.sh": (dict(queue="batch", mem_mb=4096.0, output="%x-%A_%a.out", array="1,6-7,12"),
                                     set()),
    "slurm_array_breakit.sh": (dict(name="arrayJob", time_limit=60.0, cpu=1.0), {"#SBATCH --error"}),
    "slurm_openmp_expanse.sh": (dict(cpu=24.0, mem_mb=248 * 1024.0, mem_limit_mb=248 * 1024.0, time_limit=1.5 * H,
                                     queue="compute", env="ALL", output="hello_openmp.%j.%N.out"), set()),
    "slurm_openmp_hello.sh": (dict(cpu=2.0, mem_mb=200.0, time_limit=600.0, output="res_omp_hello_world.out"), set()),
    "slurm_openmp_space_forms.sh": (dict(name="openmp_cpu_job", queue="skl", time_limit=1800.0, output="%x.o%j"),
                                    {"#SBATCH --error"}),
    "slurm_placeholders_relion.sh": (dict(error="line 4: #SBATCH --ntasks: 'XXXmpinodesXXX' is not a whole number"),
                                     set()),
    "slurm_commented_directives.sh": (dict(queue="shared", cpu=1.0, time_limit=8 * H, name="FOO", dependency=None,
                                           mail_type=None), {"#SBATCH --error"}),
    "slurm_signal_requeue.sh": (dict(cpu=32.0, time_limit=10 * H, constraint="gpu", output="%j.out"),
                                {"#SBATCH -L", "#SBATCH --gpus-per-node", "#SBATCH --ntasks-per-gpu",
                                 "#SBATCH --signal", "#SBATCH --requeue", "#SBATCH --open-mode", "#SBATCH --error"}),
    "slurm_gres_signal.sh": (dict(mem_mb=1000.0, time_limit=1200.0, queue="dev_gpu_4", output="slurm-%j.out"),
                             {"#SBATCH --gres", "#SBATCH --signal"}),
    "slurm_mpi_exclusive.sh": (dict(cpu=8.0, output="mpi/output_N_?.txt"), {"#SBATCH --exclusive", "#SBATCH --error"}),
    "slurm_multinode.sh": (dict(cpu=4.0, nodes=4, time_limit=300.0, queue="standard"),
                           {"#SBATCH --exclusive", "#SBATCH --nodes=4"}),
    "slurm_exclude.sh": (dict(cpu=16.0, queue="Lake-short", time_limit=600.0),
                         {"#SBATCH --exclusive", "#SBATCH --exclude"}),
    "slurm_mpi_tasks.sh": (dict(cpu=9.0, mem_mb=8192.0, time_limit=300.0), set()),
    "slurm_wulf_mixed.sh": (dict(name="two words", env="ALL,STAGE=prep", time_limit=60.0 * H, mem_mb=2048.0, nice=5,
                                 constraint="bigmem,ssd", cpu=2.0, wulf_args=["--mem", "1G", "--name", "mixed"]),
                            set()),
    "pbs_select_multinode.sh": (dict(dialect="pbs", name="%TASK%", cpu=1152.0, nodes=9, mem_mb=9 * 230 * 1024.0,
                                     time_limit=4 * H, queue="main", shell="/bin/bash", cwd="/home/u",
                                     output="/sub/%%LOGDIR%%/%%TASK%%.out"),
                                {"#PBS -l select=9:ncpus=128:mpiprocs=128:ompthreads=1:mem=230GB"}),
    "pbs_torque_placeholders.sh": (dict(error="line 6: #PBS -l nodes ppn: 'XXXthreadsXXX' is not a whole number"),
                                   set()),
    "pbs_csh_nodes.sh": (dict(cpu=20.0, nodes=10, time_limit=3000.0, queue="hotel", output="/sub/tf_binding.out",
                              error="/sub/tf_binding.err"),
                         {"#PBS -l nodes=10:ppn=2", "#PBS -e"}),
    "pbs_select_chunks_noshebang.sh": (dict(cpu=24.0, nodes=4, time_limit=24 * H, queue="workq", shell="/bin/bash",
                                            output="/sub/pbs_select_chunks_noshebang.sh.o%j"),
                                       {"#PBS -l select=4:ncpus=6:mpiprocs=1:ompthreads=6"}),
    "pbs_torque_array.sh": (dict(cpu=16.0, mem_mb=8192.0, time_limit=24 * H, array="1-9%30", queue="queue_name",
                                 output="/sub/sequence_processing_pipeline/tests/data/MyRunDir/QCJob_3.out.log."
                                        "${PBS_ARRAYID}"),
                            {"#PBS -e"}),
    "pbs_pro_array.sh": (dict(name="job_array_example", array="1-10", cpu=1.0, time_limit=600.0, queue="route",
                              output="/home/vcc/output", default_output="job_array_example.o%A.%a"), set()),
    "pbs_pro_array_mail.pbs": (dict(cpu=1.0, mem_mb=128 * 1024.0, time_limit=3 * H, array="0-7", mail_user=
                                    "someone@example.org", output="/sub/output_%a.txt"),
                               {"#PBS -e"}),
    "pbs_casper_join.sh": (dict(name="C1", mem_mb=4096.0, time_limit=60.0, queue="casper", error=None, array="1-10",
                                output="/glade/derecho/scratch/apdixon/national_gwp/sh_sends/C1.stdout"), set()),
    "pbs_depend.sh": (dict(cpu=16.0, dependency="afterok:11111", queue="home-yeo", time_limit=60.0),
                      {"#PBS -e"}),
    "pbs_vsc_indented.sh": (dict(name="my_serial_job", cpu=1.0, time_limit=H, output="/sub/stdout", cwd="/home/u"),
                            {"#PBS -e"}),
    "pbs_nci_wd.sh": (dict(cpu=96.0, mem_mb=32 * 1024.0, time_limit=12 * H, cwd="/sub", name="job",
                           output="/sub/job.o%j"), set()),
    "pbs_basic_dir_output.sh": (dict(name="script_name", output="/sub/OUTDIR", default_output="script_name.o%j"),
                                set()),
    "sge_uap_template.sh": (dict(dialect="sge", cpu=4.0, cwd="/sub", shell="/bin/bash", time_limit=96 * H,
                                 mem_limit_mb=4 * 8192.0, mem_mb=4 * 8192.0,
                                 output="/sub/sge_uap_template.sh.o%j"), set()),
    "sge_snakemake_template.sh": (dict(name="test", queue="all.q", cpu=None, mem_limit_mb=2048.0,
                                       output="/sub/log.test.%j.out", error="/sub/log.test.%j.err"), {"#$ -e"}),
    "sge_ucl_array_wd.sh": (dict(name="MyArrayJob", time_limit=1200.0, mem_mb=2048.0, cwd="/home/ucapsjg/workdir",
                                 output="/home/ucapsjg/workdir/MyArrayJob.o%A.%a", array="1-4"), set()),
    "sge_array_tc.sh": (dict(name="figopt", queue="corei7b", output="/sub/logs", error=None, array="1-380%50"),
                        {"#$ -p"}),
    "sge_array_logs.sh": (dict(name="optim_S2S3", output="/sub/logs", default_output="optim_S2S3.o%A.%a",
                               array="1-90"), set()),
    "sge_orte_seconds.sh": (dict(cpu=8.0, mem_mb=8 * 5 * 1024.0, time_limit=1200000.0, shell="/bin/sh"), set()),
    "sge_ompi_mem_free.sh": (dict(cpu=6.0, mem_mb=6 * 6 * 1024.0, mem_limit_mb=None, time_limit=48 * H),
                             set()),
    "sge_openmpi_trailing.q": (dict(cpu=343.0, queue="mps_amd.q", name="boyd", output="/sub/boyd.o%j"),
                               set()),
    "sge_impi_out_err.txt": (dict(cpu=16.0, name="cmo_ce", output="/sub/ll_out", error=None), set()),
    "sge_template_noshebang.sh": (dict(cpu=16.0, time_limit=920 * H, queue="cemeb20.q", output="/sub/OUT_FILE"),
                                  {"#$ -l s_rt"}),
    "sge_odd_forms.sh": (dict(cwd="/sub", shell="/bin/sh", mem_mb=8192.0, env="ALL,LD_LIBRARY_PATH=,PATH=$PATH"),
                         {"#$ -jy", "#$ -l os7", "#$ -l s_vmem"}),
    "sge_columbia_mem_time.sh": (dict(name="j7498_run1M5", mem_mb=4096.0, output="/sub/7498_run1M5.txt"),
                                 {"#$ -l time"}),
    "sge_hold_after_command.sh": (dict(name="late", dependency="prep,12", cpu=2.0, mem_limit_mb=3072.0,
                                       time_limit=1.5 * H, cwd="/home/u", output="/home/u/late.o%j"),
                                  set()),
}


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
    assert (req.cpu, req.mem_mb, req.nodes) == (8.0, 2048.0, 3)
    assert {n.directive for n in req.notes} == {"#PBS -l select=2:ncpus=3:mem=1gb+1:ncpus=2", "#PBS -l place=scatter"}
    req = read("#$ -q cpu-e.q@* -pe smp 2-8 -l h_rt=INFINITY\n", where("x"))
    assert (req.queue, req.cpu, req.time_limit, req.notes) == ("cpu-e.q", 2.0, None, [])


def test_wulf_lines_alone() -> None:
    req = read("#!/bin/sh\n# a comment\n#WULF --cpu 2\n#WULF --mem 1G  # trailing\necho\n#WULF --cpu 9\n", where("x"))
    assert (req.dialect, req.wulf_args) == ("", ["--cpu", "2", "--mem", "1G"])
