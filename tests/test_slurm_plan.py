"""The Slurm plan's arithmetic and verdicts, without a cluster."""

import re

from imagestats.plan import Plan, Shard
from imagestats.slurm import Job, Limit, make_slurm_plan

AFTER = ("aggregate_stats", "summarize_stats")


def summary(n_shards=32, size=844, per_job=1000):
    shards = {f"shard-{i:05b}": Shard(f"shard-{i:05b}", "x", size, size * 2200, 3000) for i in range(n_shards)}
    return Plan("input_dir x", "/x", n_shards * size, per_job, 8000, shards)


def due(n, cpus=1, runtime=3, mem=500):
    return [Job("image_stats", cpus, runtime, mem) for _ in range(n)]


def no_slurm(account):
    return None


def test_eurosat_run_with_the_comet_profile():
    limits = [Limit(10, "MaxSubmitJobs of user u in account comet_abc123", 0)]
    plan = make_slurm_plan(summary(), due(32, cpus=2), 8, "comet_abc123", None, AFTER, live=lambda a: limits)
    assert plan.slurm_jobs == 32 and plan.most_in_flight == 8 and plan.cpus_in_flight == 16
    assert plan.fits
    text = plan.describe()
    for line in [
        "images found       27,008",
        "shards             32 of 844-844 images (slurm_images_per_job: 1,000, slurm_mb_per_job: 8,000)",
        "Slurm jobs due     32: 32 image_stats (one shard each); aggregate_stats, summarize_stats"
        " run here after them",
        "CPUs per job       2 (--set-threads image_stats=N, or set-threads in the profile)",
        "time asked         3 min per job",
        "memory asked       500 MB per job",
        "most in flight     8 job(s), 16 CPUs (jobs: 8)",
        "submit limit       10 = MaxSubmitJobs of user u in account comet_abc123; 0 already queued",
        "limits from        sacctmgr and squeue (live)",
        "verdict            fits: at most 8 Slurm jobs in flight, 10 allowed",
    ]:
        assert line in text


def test_jobs_above_the_limit_is_refused_with_the_setting_to_change():
    plan = make_slurm_plan(summary(), due(32), 8, "acct", None, AFTER, live=lambda a: [Limit(5, "MaxSubmitJobs", 0)])
    assert not plan.fits
    assert plan.verdict() == (
        "WOULD BE REFUSED: 8 Slurm jobs in flight but only 5 more allowed. "
        "Set jobs: 5 in profiles/comet/config.yaml (or --jobs 5). Nothing was submitted."
    )


def test_a_resumed_run_counts_only_the_jobs_still_due():
    """After a partial run only 2 shards are due: they fit a limit of 3 that
    the whole run (8 in flight) would not."""
    limits = [Limit(3, "MaxSubmitJobs", 0)]
    whole = make_slurm_plan(summary(), due(32), 8, "acct", None, AFTER, live=lambda a: limits)
    resumed = make_slurm_plan(summary(), due(2), 8, "acct", None, AFTER, live=lambda a: limits)
    assert not whole.fits
    assert resumed.fits and resumed.most_in_flight == 2
    assert "Slurm jobs due     2: 2 image_stats" in resumed.describe()


def test_time_and_memory_asked_are_shown_as_ranges():
    jobs = [Job("image_stats", 1, 3, 500), Job("image_stats", 4, 12, 2400)]
    text = make_slurm_plan(summary(), jobs, 8, "acct", 20, AFTER, live=no_slurm).describe()
    assert "CPUs per job       1-4" in text
    assert "time asked         3-12 min per job" in text
    assert "memory asked       500-2,400 MB per job" in text
    assert "most in flight     2 job(s), 5 CPUs" in text


def test_jobs_already_queued_count_and_the_tightest_limit_wins():
    limits = [Limit(20, "GrpSubmitJobs of account acct", 15), Limit(10, "MaxSubmitJobs", 3)]
    plan = make_slurm_plan(summary(), due(32), 8, "acct", None, AFTER, live=lambda a: limits)
    assert plan.headroom == 5
    assert "only 5 more allowed. Set jobs: 5" in plan.verdict()
    assert "wait for your queued jobs to finish" in plan.verdict()


def test_configured_limit_when_sacctmgr_does_not_answer():
    plan = make_slurm_plan(summary(), due(32), 8, "acct", 6, AFTER, live=no_slurm)
    assert plan.limits[0].value == 6
    assert plan.source == "the profile's slurm_submit_limit (sacctmgr did not answer)"
    assert not plan.fits


def test_no_limit_known_is_said_not_guessed():
    plan = make_slurm_plan(summary(), due(32), 8, "acct", None, AFTER, live=no_slurm)
    assert plan.fits and plan.headroom is None
    assert plan.verdict() == "unchecked: no submit limit known"
    assert "set resources: slurm_submit_limit=N" in plan.describe()


def test_a_million_images_gets_settings_for_about_32_jobs():
    plan = make_slurm_plan(summary(n_shards=64, size=15_609, per_job=25_000), due(64), 8, "acct", 100,
                           AFTER, live=no_slurm)  # fmt: skip
    (note,) = plan.notes
    found = re.match(r"64 image_stats Slurm jobs: --config slurm_images_per_job=(\d+) makes about 32", note)
    assert found, note
    # a trie leaf splits only beyond the limit: 999,000 / 32 per leaf fits
    assert 999_000 / 32 < int(found.group(1)) < 999_000 / 16


def test_nothing_due_submits_nothing():
    plan = make_slurm_plan(summary(), [], 8, "acct", None, AFTER, live=lambda a: [Limit(1, "x", 0)])
    assert plan.fits and plan.most_in_flight == 0
    assert "Slurm jobs due     0" in plan.describe()


def earlier_jobs():
    from imagestats.slurm import LiveJob

    return [
        LiveJob("101", "run-a", "rule_image_stats_wildcards_shard-0", "RUNNING"),
        LiveJob("102", "run-a", "rule_image_stats_wildcards_shard-1", "PENDING"),
    ]


def test_live_jobs_of_an_earlier_run_stop_the_run_naming_them_and_what_to_do():
    limits = [Limit(8, "MaxSubmitJobs of user u in account acct", 2)]
    plan = make_slurm_plan(summary(), due(4), 8, "acct", None, AFTER, live=lambda a: limits,
                           earlier=earlier_jobs())  # fmt: skip
    assert not plan.fits
    verdict = plan.verdict()
    assert verdict.startswith("STOPPED: 2 Slurm job(s) of an earlier run in this folder")
    assert "101 (image_stats shard-0, RUNNING), 102 (image_stats shard-1, PENDING)" in verdict
    assert "`squeue -j 101,102`" in verdict and "`scancel 101 102`" in verdict
    assert "rerun the same command" in verdict and verdict.endswith("Nothing was submitted.")
    # they are this folder's own jobs, not somebody else's against the limit
    assert plan.limits[0].queued == 0 and plan.headroom == 8
    assert "not counting the 2 of this folder's earlier run" in plan.describe()


def test_live_jobs_are_this_folder_s_snakemake_jobs_only(tmp_path):
    from imagestats.slurm import live_jobs_of_workdir

    other = tmp_path.parent
    lines = [
        f"101|run-a|RUNNING|{tmp_path}|rule_image_stats_wildcards_shard-0",
        f"102|run-a|PENDING|{tmp_path}/|rule_image_stats_wildcards_shard-1",
        f"103|run-b|RUNNING|{other}|rule_image_stats_wildcards_shard-0",  # another folder
        f"104|head|RUNNING|{tmp_path}|",  # a head job running snakemake here
        f"105|mine|RUNNING|{tmp_path}|my own comment",
    ]
    calls = []
    found = live_jobs_of_workdir(str(tmp_path), run=lambda cmd: calls.append(cmd) or "\n".join(lines) + "\n")
    assert [job.job_id for job in found] == ["101", "102"]
    assert calls[0][:2] == ["squeue", "--me"]
    assert live_jobs_of_workdir(str(tmp_path), run=lambda cmd: None) is None
