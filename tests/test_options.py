"""The command line's settings come from the config dataclasses: one source for every default."""

import dataclasses

import pytest

from imitate.cli import _dagger_config, build_parser
from imitate.dagger import DAggerConfig
from imitate.dataset import BuildConfig
from imitate.experts.search import SearchConfig
from imitate.options import config_from
from imitate.policy import PolicyConfig
from imitate.sft import SFTConfig
from imitate.trpo import TRPOConfig


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_no_option_given_means_the_dataclasses_own_defaults():
    args = parse("dagger", "--data", "s.h5", "--out", "r")
    assert _dagger_config(args) == DAggerConfig()  # field for field, the nested configs included
    assert config_from(args, SearchConfig) == SearchConfig()
    assert config_from(parse("dataset", "build", "walk"), BuildConfig) == BuildConfig()
    assert config_from(parse("trpo", "--out", "r"), TRPOConfig) == TRPOConfig()
    sft = parse("sft", "--data", "s.h5", "--out", "p.pt")
    assert config_from(sft, SFTConfig) == SFTConfig() and config_from(sft, PolicyConfig) == PolicyConfig()


def test_each_flag_lands_in_its_own_field():
    args = parse("dagger", "--data", "s.h5", "--out", "r", "--epochs", "7", "--sft-epochs", "9", "--steps", "40",
                 "--hidden", "64", "32", "--ensemble", "3", "--residual", "--epoch-samples", "500",
                 "--drop-before-fall", "0.5", "--eval-seconds", "4", "--seed", "2")
    config = _dagger_config(args)
    assert config.retrain.epochs == 7 and config.sft.epochs == 9  # one class, two groups
    assert config.retrain.patience == DAggerConfig().retrain.patience == 8  # the preset's, not SFTConfig's 15
    assert config.sft.patience == 15 and config.retrain.epoch_samples == 500 and config.sft.epoch_samples is None
    assert config.steps_per_env == 40 and config.eval_horizon_s == 4.0 and config.seed == config.sft.seed == 2
    assert config.policy == dataclasses.replace(PolicyConfig(), hidden=(64, 32), members=3, residual=True)
    assert config.retrain.drop_before_fall_s == 0.5
    search = config_from(parse("evaluate", "--expert", "search", "--search-cold", "--search-temperature", "0.3",
                               "--planning-hz", "150"), SearchConfig)
    assert search == dataclasses.replace(SearchConfig(), warm_start=False, temperature=0.3, planning_hz=150.0)


def test_a_search_preset_is_a_named_config_that_given_flags_override():
    from imitate.cli import _search_config
    from imitate.experts.search import DAGGER_LABELS, GUIDED_LABELS, LEARN_LABELS
    from imitate.pipeline import RECIPES

    def search(*flags, expert="search"):
        return _search_config(parse("evaluate", "--expert", expert, *flags), expert)

    assert search() == SearchConfig()
    assert search(expert="guided") == GUIDED_LABELS
    assert search("--search-preset", "plain", expert="guided") == SearchConfig()
    assert search("--search-preset", "dagger") == DAGGER_LABELS
    assert search("--search-preset", "learn") == LEARN_LABELS == RECIPES["search"].search
    assert search("--search-preset", "dagger", "--candidates", "8") == dataclasses.replace(DAGGER_LABELS, candidates=8)


@pytest.mark.parametrize("command, cls", [(["dagger", "--data", "s", "--out", "r"], DAggerConfig),
                                          (["dataset", "build", "walk"], BuildConfig),
                                          (["sft", "--data", "s", "--out", "p"], SFTConfig),
                                          (["trpo", "--out", "r"], TRPOConfig)])
def test_help_shows_the_dataclass_defaults(command, cls, capsys):
    with pytest.raises(SystemExit):
        parse(*command[:2] if command[0] == "dataset" else command[:1], "--help")
    text = " ".join(capsys.readouterr().out.split())
    offered = [f for f in dataclasses.fields(cls) if f.metadata.get("help")]
    assert offered
    for f in offered:  # each default, as the dataclass has it, beside its help
        default = getattr(cls(), f.name)
        if default is None or isinstance(default, (bool, tuple)) or "default" in f.metadata["help"]:
            continue
        assert f"{' '.join(f.metadata['help'].split())} (default: {default})" in text, f.name
