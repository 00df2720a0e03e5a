"""Bad input to the trainer's configs and command line: one clear error, nothing overwritten."""

import pytest
import torch

from inference.gpt import GPT, load_model
from training import checkpoint
from training.__main__ import main
from training.bpe import build_tokenizer
from training.config import ConfigError, load_run_config

BAD_OVERRIDES = [
    ("train.lr=abc", "train.lr='abc' is invalid; expected a number"),
    ("train.time_budget_s=abc", "train.time_budget_s='abc' is invalid; expected a number"),
    ("train.seed=1.5", "train.seed=1.5 is invalid; expected an integer"),
    ("train.batch_size=2.5", "train.batch_size=2.5 is invalid; expected an integer"),
    ("train.progress_bar=maybe", "train.progress_bar='maybe' is invalid; expected true or false"),
    ('train.extra_dirs="/tmp/x"', "train.extra_dirs='/tmp/x' is invalid; expected a list"),
    ("model.n_head=0", "n_head=0 must be a positive integer"),
    ("train.num_threads=0", "num_threads must be a positive integer, got 0"),
    ("train.eval_batches=0", "eval_batches must be a positive integer, got 0"),
    ("train.min_per_row=-1", "min_per_row must be 0 or more, got -1"),
    ("train.grad_rms_clip=0", "grad_rms_clip must be positive, got 0.0"),
    ("train.warmup_frac=5", r"warmup_frac must be in \[0, 1\], got 5.0"),
    ("train.name=../../etc", "train.name='../../etc' is invalid"),
    ("train.name=a/b", "train.name='a/b' is invalid"),
    ("train.lr=inf", "train.lr=inf is invalid; expected a finite number"),
    ("train.weight_decay=nan", "train.weight_decay=nan is invalid; expected a finite number"),
    ("train.time_budget_s=nan", "train.time_budget_s=nan is invalid; expected a finite number"),
    ("model.dropout=1.5", r"dropout=1.5 is invalid; use a value in \[0, 1\)"),
    ("train.seed=99999999999999999999", "does not fit in 64 bits"),
    ('train.out_dir=""', "out_dir is empty"),
    ('train.checkpoint_dir=" "', "checkpoint_dir is empty"),
    ('train.extra_dirs=[""]', "has an empty folder name"),
    ("train.num_threads=100000", "num_threads=100000 is above 1024"),
]


@pytest.mark.parametrize(("override", "message"), BAD_OVERRIDES)
def test_bad_override_raises_config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config("tiny", [override])


def test_integer_for_float_field_becomes_float():
    run = load_run_config("tiny", ["train.lr=1"])
    assert run.train.lr == 1.0
    assert isinstance(run.train.lr, float)


def test_broken_toml_names_file(tmp_path):
    preset = tmp_path / "broken.toml"
    preset.write_text("[train\nname = 1\n")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        load_run_config(str(preset))


def test_cli_prints_one_line_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "tiny", "--set", "train.lr=abc"])
    assert str(exit_info.value) == "error: train.lr='abc' is invalid; expected a number"


def test_cli_rejects_resume_with_overwrite(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "tiny", "--resume", "--overwrite"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_resume_without_checkpoint(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "tiny", "--resume", "--set", f'train.checkpoint_dir="{tmp_path}"'])
    assert (
        str(exit_info.value)
        == f"error: no checkpoint at {tmp_path}/tiny/ckpt.pt; start without --resume"
    )


def test_missing_model_folder_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"model folder {tmp_path}/nothing not found"):
        load_model(str(tmp_path / "nothing"))


def test_eval_tasks_skips_tasks_longer_than_block_size(tmp_path, capsys):
    torch.manual_seed(0)
    run = load_run_config("tiny", ["model.block_size=8"])
    folder = checkpoint.write_model(tmp_path, "short", run, GPT(run.model).state_dict())

    main(["eval-tasks", str(folder), "--task", "else_elif"])

    output = capsys.readouterr().out
    assert "else_elif" in output
    assert "skipped:" in output
    assert "longer than the model's block_size 8" in output


def test_bpe_keeps_existing_tokenizer(tmp_path):
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite to replace them"):
        build_tokenizer(tmp_path)
    assert (tmp_path / "encoder.json").read_text() == "{}"


def test_cli_rejects_unknown_tokenizer():
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "tiny", "--set", "model.tokenizer_name=../x"])
    assert str(exit_info.value).startswith(
        "error: model.tokenizer_name='../x' is unknown; use one of"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('train.init_from="{tmp}/none"', "has no beeg_config.json or final_model.pt"),
        ('train.out_dir="{tmp}/file/store"', "file is a file, so"),
        ('train.checkpoint_dir="{tmp}/file"', "file is a file, so"),
    ],
)
def test_cli_checks_folders_before_training(tmp_path, override, message):
    (tmp_path / "file").write_text("")
    overrides = [f'train.out_dir="{tmp_path}/out"', f'train.checkpoint_dir="{tmp_path}/ck"']
    overrides.append(override.format(tmp=tmp_path))
    arguments = ["train", "tiny"]
    for text in overrides:
        arguments += ["--set", text]
    with pytest.raises(SystemExit, match=message):
        main(arguments)
    assert not (tmp_path / "ck" / "token_cache").exists()  # stopped before the corpus was read


def test_damaged_progress_line_is_named(tmp_path):
    progress = tmp_path / "progress.json"
    progress.write_text('{"step": 10}\n\n{"step": 20, "tra')
    with pytest.raises(ValueError, match="progress.json line 3 is not a progress record"):
        checkpoint.truncate_progress(progress, 10)


def test_other_tokenizer_in_out_dir_is_rejected(tmp_path):
    checkpoint.copy_tokenizer("stdlib_2k", tmp_path)
    assert (tmp_path / "stdlib_2k" / "vocab.bpe").is_file()
    checkpoint.copy_tokenizer("stdlib_2k", tmp_path)  # the same files again: accepted

    (tmp_path / "stdlib_2k" / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(FileExistsError, match="differs from the tokenizer this run trains with"):
        checkpoint.copy_tokenizer("stdlib_2k", tmp_path)
