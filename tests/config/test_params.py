"""params.yaml validation: bad values are rejected naming the key; profiles and overrides resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdd.config import ModelOptions, RunSpec, load_params
from pdd.errors import ConfigError
from pdd.models.options import LayerLoss, PDDOptions

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"


def test_shipped_params_validate_and_follow_the_paper_recipe():
    params = load_params(PARAMS)
    assert params.profile == "paper"
    assert (params.train.lr, params.train.betas, params.train.t_max, params.train.eta_min) == (2e-3, [0.5, 0.999],
                                                                                               40, 2e-4)
    assert (params.train.epochs, params.train.batch_size, params.data.image_size) == (100, 10, 256)
    # the model owns the fidelity defaults; variants override single options on top
    assert params.model_options("full", "paper") == {}
    assert params.model_options("full-nodiv") == {"lambda_div": 0.0}
    assert params.model_options("tau-0.40-0.75") == {"tau_low": 0.40, "tau_high": 0.75}
    options = load_params(PARAMS, ["model.fidelities.paper.tau_low=0.2"]).build_options("tau-0.40-0.75", "paper")
    assert options["tau_low"] == 0.40 and options["pretrained"] is True
    assert options["wrn_weights"] == params.teachers.wrn50.file


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lrr=0.1", "train.lrr"),  # unknown key
        ("train.epochs=ten", "train.epochs"),  # wrong type
        ("train.epochs=0", "train.epochs"),
        ("train.lr=0", "train.lr"),
        ("train.lr=-1e-3", "train.lr"),
        ("train.batch_size=0", "train.batch_size"),
        ("variants.full.overrides.tau_low=1.5", "variants.full.overrides.tau_low"),
        ("model.fidelities.paper.tau_high=-0.1", "model.fidelities.paper.tau_high"),
        ("data.image_size=100", "data.image_size"),
        ("data.image_size=0", "data.image_size"),
        ("teachers.pretrained=yes please", "teachers.pretrained"),
        ("eval.scorings=[ts, xx]", "eval.scorings.1"),
        ("plan.table1.0.variants=[full, nope]", "plan.table1.0.variants"),
        ("train.eta_min=1.0", "train.eta_min"),
        ("variants.full.overrides.cosine=diagonal", "variants.full.overrides.cosine"),
        ("model.fidelities.code.layerloss=3", "model.fidelities.code.layerloss"),
        ("variants.M1.arch=M5", "variants.M1.arch"),
        ("teachers.wrn50.tag=in22k", "teachers.wrn50.tag"),  # caught here, not when a training job builds
    ],
)
def test_bad_value_is_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError) as raised:
        load_params(PARAMS, [override])
    assert f"  {key}:" in str(raised.value)


def test_bad_value_in_the_file_itself_is_rejected(tmp_path):
    tree = yaml.safe_load(PARAMS.read_text())
    tree["variants"]["tau-0.40-0.75"]["overrides"]["tau_high"] = 7
    tree["train"]["epochs"] = 0
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError) as raised:
        load_params(bad)
    message = str(raised.value)
    assert "variants.tau-0.40-0.75.overrides.tau_high:" in message and "train.epochs:" in message


def test_unknown_key_lists_what_is_allowed():
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown key; allowed here: .*\blr\b"):
        load_params(PARAMS, ["train.lrr=1"])


def test_unknown_profile_is_rejected():
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_params(PARAMS, profile="nope")


@pytest.mark.parametrize("profile", [None, "demo"])
def test_the_shipped_teacher_cache_caches_on_the_cpu_and_recomputes_on_cuda(profile):
    """A GPU run of the paper plan would write ~276 GB of fp32 teacher cache and read it back image by image,
    slower than the GPU's own teacher forward; on the CPU a cache hit saves seconds per image."""
    params = load_params(PARAMS, profile=profile)
    for dataset in params.data.datasets:
        assert params.teacher_cache_enabled(dataset, "cpu") and not params.teacher_cache_enabled(dataset, "cuda")


def test_demo_profile_and_overrides_resolve_in_order():
    demo = load_params(PARAMS, ["train.epochs=3"], profile="demo")
    assert demo.profile == "demo" and demo.synthetic_data and demo.random_teachers and demo.demo_only
    real_data_random_teachers = load_params(PARAMS, ["teachers.pretrained=false"])
    assert not real_data_random_teachers.synthetic_data and real_data_random_teachers.demo_only
    assert not load_params(PARAMS).demo_only
    assert demo.build_options("full")["vmamba_weights"] is None
    assert demo.train.epochs == 3  # --set beats the profile's 2
    assert demo.data.image_size == 64
    assert demo.run_dir("headct", "full", "code", 0) == Path("results/demo/headct/full/code/seed0")
    assert demo.prepared_dir("zhanglab") == Path("data/demo/prepared/zhanglab")
    # --set profile=demo is the same as --profile demo (what DVC's `-S profile=demo` amounts to)
    assert load_params(PARAMS, ["profile=demo", "train.epochs=3"]).sha256() == demo.sha256()


@pytest.mark.parametrize(("setting", "cpu", "cuda"), [("auto", 0, 2), ("0", 0, 0), ("3", 3, 3)])
def test_loader_workers_load_in_process_on_the_cpu_unless_asked(setting, cpu, cuda):
    params = load_params(PARAMS, [f"train.num_workers={setting}"])
    assert (params.loader_workers("cpu"), params.loader_workers("cuda")) == (cpu, cuda)
    assert load_params(PARAMS).train.num_workers == "auto"
    with pytest.raises(ConfigError, match="train.num_workers"):
        load_params(PARAMS, ["train.num_workers=-1"])


def test_dotted_override_reaches_names_with_dots():
    # not its τ: Table 5 needs the paper's (tests/reporting/test_arms.py)
    params = load_params(PARAMS, ["variants.tau-0.40-0.75.overrides.lambda_div=0.25", "seeds=[0, 1]"])
    assert params.model_options("tau-0.40-0.75")["lambda_div"] == 0.25
    assert params.seeds == [0, 1]


def test_sha256_tracks_resolved_values_only():
    base = load_params(PARAMS)
    assert load_params(PARAMS).sha256() == base.sha256()
    assert load_params(PARAMS, ["train.epochs=99"]).sha256() != base.sha256()
    # profiles that are not applied do not change the hash
    assert load_params(PARAMS, ["profiles.demo.train.epochs=1"]).sha256() == base.sha256()


def test_plan_runs_per_table():
    params = load_params(PARAMS, ["seeds=[0, 1]"])
    table1 = params.plan_runs("table1")
    assert {run.dataset for run in table1} == {"headct", "zhanglab", "brainmri", "chexpert"}
    # PDD and the RD4AD re-run on every dataset, each at both seeds
    assert {run.variant for run in table1} == {"full", "rd4ad"} and len(table1) == 16
    assert [run.variant for run in params.plan_runs("table2")] == ["full", "full", "rd4ad", "rd4ad"]
    assert RunSpec("brainmri", "full-nodiv", "code", 1) in params.plan_runs("table4")
    assert [run.variant for run in params.plan_runs("table3") if run.seed == 0] == ["M1", "M2", "M3", "M4", "full"]
    everything = params.plan_runs()
    assert len(everything) == len(set(everything))  # table1 and table3 share zhanglab/full once
    assert set(table1) <= set(everything)
    with pytest.raises(ConfigError, match="unknown table"):
        params.plan_runs("table9")


def test_localisation_figures_get_their_runs_even_when_no_table_needs_them():
    """Figs. 4/5 set the re-run RD4AD beside PDD (Table 1's runs); a figure run no table needs is trained too."""
    params = load_params(PARAMS)
    figure_runs = [spec for spec in params.plan_runs() if spec.variant == "rd4ad" and spec.dataset in ("headct", "zhanglab")]
    assert len(figure_runs) == 2 and all(spec in params.plan_runs("table1") for spec in figure_runs)
    extra = load_params(PARAMS, ["reporting.figure_runs=[{datasets: [headct], variants: [M1, full]}]"])
    headct_m1 = RunSpec("headct", "M1", "code", 0)
    assert all(headct_m1 not in extra.plan_runs(table) for table in extra.plan)
    assert headct_m1 in extra.plan_runs() and headct_m1 not in params.plan_runs()
    with pytest.raises(ConfigError, match=r"reporting\.figure_runs\.0\.variants"):
        load_params(PARAMS, ["reporting.figure_runs=[{datasets: [headct], variants: [M9]}]"])


def test_cli_check_exits_2_naming_the_key():
    result = subprocess.run([sys.executable, "-m", "pdd", "params", "check", "--params", str(PARAMS),
                             "--set", "train.lr=0"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "train.lr:" in result.stderr and "Traceback" not in result.stderr


def test_params_take_every_tunable_model_option_with_the_model_ranges():
    """params.yaml's model options are PDDOptions' tunable fields: a new option needs no second declaration."""
    tunable = PDDOptions.tunable_fields()
    assert list(ModelOptions.model_fields) == list(tunable)
    for layerloss in LayerLoss:
        assert load_params(PARAMS, [f"variants.full.overrides.layerloss={layerloss.value}"]).model_options(
            "full") == {"layerloss": layerloss.value}
    # params and the model refuse the same value, each naming the option
    with pytest.raises(ConfigError, match=r"model\.fidelities\.code\.low_dim_layers: .*less than or equal to 3"):
        load_params(PARAMS, ["model.fidelities.code.low_dim_layers=4"])
    with pytest.raises(ConfigError, match="low_dim_layers: .*less than or equal to 3"):
        PDDOptions.resolve("full", low_dim_layers=4)


def test_eval_sigma_reaches_the_model_options():
    assert load_params(PARAMS, ["eval.sigma=2.5"]).build_options("full")["map_sigma"] == 2.5


def test_a_removed_key_says_what_replaced_it(tmp_path):
    old = yaml.safe_load(PARAMS.read_text())
    old["train"]["checkpoint_every"] = 10  # a params file from before snapshots replaced full checkpoints
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=r"train.checkpoint_every was removed: .*train.eval_every epochs; delete the key"):
        load_params(path)
    with pytest.raises(ConfigError, match="checkpoint_every was removed"):
        load_params(PARAMS, ["train.checkpoint_every=5"])


def test_a_variant_trains_with_its_own_recipe_and_teachers_over_the_global_ones():
    params = load_params(PARAMS)
    recipe = params.recipe("rd4ad")  # RD4AD's main.py
    assert (recipe.lr, recipe.betas, recipe.schedule, recipe.epochs, recipe.batch_size, recipe.eval_every) == (
        5e-3, [0.5, 0.999], "constant", 200, 16, 10)
    assert recipe.unread == ("t_max", "eta_min") and params.recipe("M1") == params.train
    assert recipe.num_workers == params.train.num_workers  # execution settings stay global
    assert params.teachers_of("rd4ad").wrn50.tag == "tv_in1k" and params.teachers_of("M1").wrn50.tag == "racm_in1k"
    assert params.build_options("rd4ad")["wrn_weights"] == "weights/wide_resnet50_2-95faca4d.pth"
    assert params.teachers_of("rd4ad").wrn50.url.endswith("wide_resnet50_2-95faca4d.pth")  # the tag's pinned file
    assert params.model_options("rd4ad", "paper") == {"cosine": "global"}  # RD4AD's loss whatever the fidelity


def test_a_profile_shrinks_a_variant_recipe_and_set_beats_both():
    """A variant's own value wins over `train.*` whoever set either; profiles and --set edit either key."""
    demo = load_params(PARAMS, profile="demo")
    assert all(demo.recipe(run.variant).epochs == 2 for run in demo.plan_runs())  # the demo trains nothing long
    assert demo.recipe("rd4ad").batch_size == 4 and demo.recipe("rd4ad").lr == 5e-3
    edited = load_params(PARAMS, ["train.epochs=5", "variants.rd4ad.train.epochs=3"], profile="demo")
    assert (edited.recipe("full").epochs, edited.recipe("rd4ad").epochs) == (5, 3)
    assert load_params(PARAMS, ["train.epochs=5"], profile="demo").recipe("rd4ad").epochs == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("variants.rd4ad.train.t_max=40", "variants.rd4ad.train.t_max: is not read: variant rd4ad trains with "
                                          "schedule constant, which reads neither t_max nor eta_min; delete the key"),
        ("variants.tau-0.40-0.75.train={schedule: cosine_single, t_max: 40}",
         "variants.tau-0.40-0.75.train.t_max: is not read: variant tau-0.40-0.75 trains with schedule cosine_single"),
        ("variants.rd4ad.train.num_workers=4",
         "variants.rd4ad.train.num_workers: unknown key; allowed here: optimizer"),
        ("variants.rd4ad.train.batch_size=0", "variants.rd4ad.train.batch_size: Input should be greater than or equal"),
        ("variants.M1.train.lr=1.0e-4", "train.eta_min: must not exceed train.lr (0.0001), got 0.0002 (in the recipe "
                                        "of variant M1"),
        ("variants.rd4ad.overrides.tau_low=0.5", "variants.rd4ad.overrides.tau_low: arch M1 does not use tau_low "
                                                 "(it reads cosine, lambda_kr); delete the key"),
        ("variants.rd4ad.teachers.vmamba.file=weights/v.pth",
         "variants.rd4ad.teachers.vmamba: arch M1 has no VMamba teacher"),
        ("variants.M1.teachers.wrn50={tag: tv_in1k, file: weights/wide_resnet50_racm-8234f177.pth}",
         "variants.M1.teachers.wrn50.file: names weights/wide_resnet50_racm-8234f177.pth like teachers.wrn50.file, "
         "but pins another url/sha256"),
    ],
)
def test_a_variant_override_the_run_cannot_use_is_refused_naming_it(override, message):
    with pytest.raises(ConfigError) as error:
        load_params(PARAMS, [override])
    assert message in str(error.value)
