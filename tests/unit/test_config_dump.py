"""An experiment's config.yaml: what only ESPnet's dump holds is dropped in one place."""

import pytest
import yaml

from espnet_shared_conformer.config_dump import is_config_dump, training_options


@pytest.fixture(scope="module")
def parser():
    from espnet2.tasks.asr import ASRTask

    return ASRTask.get_parser()


def test_training_options_are_what_asr_train_config_accepts(parser, tmp_path):
    args = parser.parse_args(["--output_dir", "exp/a", "--token_list", "t.txt"])
    # The namespace holds `required` (a parser default no option sets); the
    # trainer adds the rest.
    dump = dict(vars(args), config="conf/train.yaml", distributed=False, version="x")
    assert is_config_dump(dump)

    options = training_options(dump, parser)
    assert set(options) == set(vars(args)) - {"config", "required"}
    assert not is_config_dump(options)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(options))
    reread = parser.parse_args(["--config", str(path)])
    assert (reread.output_dir, reread.token_list) == ("exp/a", "t.txt")

    path.write_text(yaml.safe_dump(dump))
    with pytest.raises(SystemExit):  # the reason: --config refuses the dump
        parser.parse_args(["--config", str(path)])
