"""The Slurm plan's arithmetic and verdicts, without a cluster."""

from imagestats.slurm import Limit, make_slurm_plan
from imagestats.workflow import PlanSummary

FINAL = ("aggregate_stats", "summarize_stats", "plot_stats")


def summary(n_shards=32, size=844):
    shards = {f"shard-{i:05b}": size for i in range(n_shards)}
    return PlanSummary("input_dir x", n_shards * size, 1000, shards)


def no_slurm(account):
    return None


def test_eurosat_run_with_the_comet_profile():
    limits = [Limit(10, "MaxSubmitJobs of user u in account comet_abc123", 0)]
    plan = make_slurm_plan(summary(), 8, "comet_abc123", None, 4, FINAL, live=lambda a: limits)
    assert plan.shard_jobs == 8 and plan.slurm_jobs == 11
    assert plan.most_in_flight == 8
    assert plan.fits
    text = plan.describe()
    for line in [
        "images found       27,008",
        "shards             32 of 844-844 images (images_per_job: 1,000)",
        "Slurm jobs         11: 8 image_stats job(s) of up to 4 shard(s) + 3",
        "most in flight     8 (jobs: 8)",
        "submit limit       10 = MaxSubmitJobs of user u in account comet_abc123; 0 already queued",
        "limits from        sacctmgr and squeue (live)",
        "verdict            fits: at most 8 Slurm jobs in flight, 10 allowed",
    ]:
        assert line in text


def test_jobs_above_the_limit_is_refused_with_the_setting_to_change():
    plan = make_slurm_plan(summary(), 8, "acct", None, 4, FINAL, live=lambda a: [Limit(5, "MaxSubmitJobs", 0)])
    assert not plan.fits
    assert plan.verdict() == (
        "WOULD BE REFUSED: 8 Slurm jobs in flight but only 5 more allowed. "
        "Set jobs: 5 in profiles/comet/config.yaml (or --jobs 5). Nothing was submitted."
    )


def test_jobs_already_queued_count_and_the_tightest_limit_wins():
    limits = [Limit(20, "GrpSubmitJobs of account acct", 15), Limit(10, "MaxSubmitJobs", 3)]
    plan = make_slurm_plan(summary(), 8, "acct", None, 4, FINAL, live=lambda a: limits)
    assert plan.headroom == 5
    assert "only 5 more allowed. Set jobs: 5" in plan.verdict()
    assert "wait for your queued jobs to finish" in plan.verdict()


def test_small_runs_need_few_jobs_in_flight():
    plan = make_slurm_plan(summary(n_shards=3), 8, "acct", None, 4, FINAL, live=lambda a: [Limit(3, "x", 0)])
    assert plan.shard_jobs == 1 and plan.most_in_flight == 2  # summarize and plot together
    assert plan.fits


def test_configured_limit_when_sacctmgr_does_not_answer():
    plan = make_slurm_plan(summary(), 8, "acct", 6, 4, FINAL, live=no_slurm)
    assert plan.limits[0].value == 6
    assert plan.source == "the profile's slurm_submit_limit (sacctmgr did not answer)"
    assert not plan.fits


def test_no_limit_known_is_said_not_guessed():
    plan = make_slurm_plan(summary(), 8, "acct", None, 4, FINAL, live=no_slurm)
    assert plan.fits and plan.headroom is None
    assert plan.verdict() == "unchecked: no submit limit known"
    assert "set resources: slurm_submit_limit=N" in plan.describe()


def test_a_million_images_gets_advice():
    plan = make_slurm_plan(summary(n_shards=1300, size=770), 8, "acct", 100, 4, FINAL, live=no_slurm)
    assert plan.shard_jobs == 325
    assert any("images_per_job: 8,000" in note for note in plan.notes)
