"""train_supernet.py and train_subnet.py driven in-process: bad input stops before anything is
written, a run leaves its record, and retraining a fixed architecture learns."""
import json
import re

import mxnet as mx
import pytest

import train_subnet
import train_supernet
from oneshot_nas.cli import run
from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import load_model, read_meta
from oneshot_nas.runs.rundir import read_jsonl
from oneshot_nas.space import Architecture, get_space, save_architecture
from profiling import score


def rec_flags(dataset):
    return ["--rec-train", str(dataset.train.rec), "--rec-train-idx", str(dataset.train.idx),
            "--rec-val", str(dataset.val.rec), "--rec-val-idx", str(dataset.val.idx)]


def fails(main, argv, capsys, message):
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run(main, argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / "tiny-net.json"
    save_architecture(path, Architecture(get_space("tiny"), [1, 0, 3, 2] * 5, [6, 5, 7, 4] * 5))
    return path


@pytest.mark.parametrize("flags, message", [
    (["--gpus", "0"], "this MXNet build has no GPU support"),
    (["--space", "huge"], "unknown search space 'huge'; choose one of: oneshot, oneshot+, tiny, tiny4"),
    (["--rec-train", "nowhere/train.rec", "--rec-train-idx", "nowhere/train.idx",
      "--rec-val", "nowhere/val.rec", "--rec-val-idx", "nowhere/val.idx"], "nowhere/train.rec does not exist"),
    (["--rec-train", "nowhere/train.rec"], "3 of them are not given (--rec-train-idx / --rec-val / --rec-val-idx)"),
    (["--num-classes", "5"], "the data has 10 classes but the model has 5"),
    (["--flops-range", "5M:30M"], "they range from 0.171M to 1.14M"),
    (["--kv-store", "dist_sync"], "needs MXNet's parameter-server launcher"),
    (["--dtype", "float16"], "--dtype float16 is for GPUs"),
    (["--lr-mode", "step"], "--lr-mode step needs --lr-decay-epoch"),
    (["--reference-arch", "nowhere.json"], "architecture file nowhere.json does not exist"),
    (["--resume"], "holds no run (args.json is missing)"),
    # numbers that are not numbers, and the flags of gluoncv's and the OneShot+ scripts
    (["--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
    (["--momentum", "inf"], "argument --momentum: 'inf' is not a finite number"),
    (["--max-macs", "nan"], "is not a finite number"),
    (["--max-flops", "nan"], "is not a finite number"),
    (["--bn-only-from", "20", "--num-epochs", "10"], "--bn-only-from 20 must come after the one-path epochs"),
    (["--resume-states", "x.states"], "pass --resume with the run's --save-dir"),
    (["--warmup-epochs", "20", "--num-epochs", "10"], "warm-up epochs 20.0 must be at least 0 and fewer"),
    (["--lr-mode", "step", "--lr-decay-epoch", "5", "--lr-decay", "2"], "step decay factor 2.0 must be in"),
    (["-j", "-1"], "decode threads must be at least 1, got -1 (--num-data-workers)"),
    (["--num-gpus", "2"], "this MXNet build has no GPU support"),
    (["--num-gpus", "1", "--gpus", "0"], "--gpus and --num-gpus both name GPUs"),
    (["--resume-epoch", "3"], "pass --resume with the run's --save-dir"),
    (["--resume-params", "x.params"], "pass --resume with the run's --save-dir"),
    (["--mode", "imperative"], "invalid choice: 'imperative'"),
    (["--nonsense"], "unrecognized arguments: --nonsense"),
])
def test_supernet_bad_input_fails_before_anything_is_written(flags, message, tmp_path, capsys):
    fails(train_supernet.main, flags + ["--save-dir", str(tmp_path / "run")], capsys, message)
    assert not (tmp_path / "run").exists()


def test_val_classes_the_model_lacks(small, tmp_path, capsys):
    fails(train_supernet.main, rec_flags(small) + ["--num-classes", "5", "--save-dir", str(tmp_path / "r")],
          capsys, "but the model has 5 classes (0..4)")


def test_subnet_bad_input(tiny_arch, tmp_path, capsys):
    fails(train_subnet.main, ["nowhere.json"], capsys, "architecture file nowhere.json does not exist")
    fails(train_subnet.main, [str(tiny_arch), "--inherit-from", str(tmp_path / "x.params")], capsys,
          "x.params does not exist")
    fails(train_subnet.main, [str(tiny_arch), "--output", str(tmp_path / "model.bin")], capsys,
          "must end in .params")
    assert list(tmp_path.iterdir()) == []


def test_supernet_run_leaves_its_record_and_is_not_overwritten(small, tmp_path, capfd, tiny_arch):
    save = tmp_path / "supernet-run"
    argv = rec_flags(small) + ["--num-epochs", "1", "--batch-size", "32", "--val-paths", "2",
                               "--calib-images", "64", "--reference-arch", str(tiny_arch), "-j", "1",
                               "--save-dir", str(save), "--no-progress", "--label-smoothing",
                               "--save-frequency", "1", "--log-interval", "2", "--mode", "hybrid"]
    history = train_supernet.main(argv)
    assert [r["epoch"] for r in history] == [0]
    args = json.loads((save / "args.json").read_text())
    assert args["batch_size"] == 32 and args["val_paths"] == 2 and args["label_smoothing"] == 0.1
    assert load_model(save / "epoch-0000.params")[1]["record"]["epoch"] == 0      # --save-frequency 1
    log = (save / "train.log").read_text()
    assert "epoch 0 step 2/" in log and "images/s" in log and "left in the epoch" in log
    assert "ImageRecordIOParser2" not in capfd.readouterr().err      # the C++ line, on fd 2
    rows = read_jsonl(save / "metrics.jsonl")
    assert len(rows) == 1
    for key in ("loss", "train_top1", "val_top1_mean", "val_top1_min", "val_top1_max", "val_top5_mean",
                "ref_top1", "lr", "scales", "images_per_sec", "seconds"):
        assert key in rows[0], key
    assert "epoch 0:" in (save / "train.log").read_text()
    assert (save / "curves.png").stat().st_size > 10000
    # paths.jsonl: every path the epoch trained, with its MACs and params and the gene histograms
    paths = read_jsonl(save / "paths.jsonl")
    steps = rows[0]["updates"]
    assert len(paths) == 1 and len(paths[0]["macs"]) == len(paths[0]["params"]) == steps
    assert [sum(h) for h in paths[0]["block_counts"]] == [steps] * 20
    assert len(paths[0]["channel_counts"][0]) == 10 and min(paths[0]["macs"]) > 0
    net, meta = load_model(save / "supernet.params")
    assert meta["kind"] == "supernet" and meta["record"]["epochs"] == 1
    # a second run in the same folder is refused and leaves the checkpoint alone
    checkpoint = (save / "checkpoint" / "model.params").read_bytes()
    fails(train_supernet.main, argv, capfd, "already holds a run; resume it, overwrite it")
    assert (save / "checkpoint" / "model.params").read_bytes() == checkpoint
    assert len(read_jsonl(save / "metrics.jsonl")) == 1
    # the saved supernet seeds a retraining
    sub = tmp_path / "inherited"
    train_subnet.main([str(tiny_arch), "--inherit-from", str(save / "supernet.params"), "--num-epochs", "1",
                       "--batch-size", "32", "-j", "1", "--save-dir", str(sub), "--no-progress"]
                      + rec_flags(small))
    assert read_meta(sub / "tiny-net.params")["record"]["start"].startswith("inherited from")


def test_retraining_learns_and_saves_a_scorable_model(tiny_arch, tmp_path):
    save, output = tmp_path / "retrain", tmp_path / "models" / "tiny-net.params"
    history = train_subnet.main([str(tiny_arch), "--num-epochs", "6", "--batch-size", "64", "--lr", "0.1",
                                 "--save-dir", str(save), "--output", str(output), "--no-progress"])
    meta = read_meta(output)
    assert meta["kind"] == "subnet" and meta["arch"] == str(Architecture.from_dict(meta))
    record = meta["record"]
    assert record["top1"] == history[-1]["val_top1"] and record["top5"] == history[-1]["val_top5"]
    assert record["top1"] > 0.5, record       # chance is 0.1 on the ten digits
    assert record["dataset"] == "digits" and record["start"] == "scratch"
    assert len(read_jsonl(save / "metrics.jsonl")) == 6 and (save / "curves.png").is_file()
    report = tmp_path / "score.json"
    score.main([str(output), "--format", "json", "--out", str(report)])
    assert json.loads(report.read_text())["arch"] == meta["arch"]


def test_a_folder_that_cannot_be_written_is_one_line_before_training(small, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    fails(train_supernet.main, ["--save-dir", str(tmp_path / "a-file")], capsys, "is a file, not a folder")
    fails(train_supernet.main, ["--save-dir", "/sys/oneshot-nas-run"], capsys,
          "cannot write the run's first files in /sys/oneshot-nas-run: operation not permitted: the "
          "folder is read-only for you; choose another folder")


def test_a_full_disk_stops_with_one_line_and_leaves_nothing_half_written(small, tmp_path, capsys):
    """On a 1 MB filesystem the supernet's first checkpoint (2 MB) cannot be written: one line, no
    partial checkpoint, no traceback."""
    import subprocess
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        capsys.readouterr()
        with pytest.raises(SystemExit):
            run(train_supernet.main, rec_flags(small) + ["--num-epochs", "1", "--batch-size", "32",
                                                         "--val-paths", "1", "--calib-images", "32", "-j", "1",
                                                         "--no-progress", "--save-dir", str(disk / "run")])
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith(f"error: cannot write the checkpoint (the previous one is kept) "
                                               f"in {disk / 'run'}: no space left on the device"), err
        assert "Traceback" not in err
        left = sorted(p.name for p in (disk / "run").iterdir())
        assert "checkpoint" not in left and "checkpoint.tmp" not in left, left
    finally:
        from oneshot_nas.cli import setup_logging
        setup_logging()                      # closes the run's log file on the small filesystem
        subprocess.run(["umount", str(disk)])


def test_bad_recordio_is_one_line_before_anything_is_written(small, tmp_path, capsys):
    """A truncated copy and records with two labels each are caught when the data is checked."""
    import shutil
    truncated = tmp_path / "truncated.rec"
    shutil.copy(small.train.rec, truncated)
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    reader = mx.recordio.MXIndexedRecordIO(str(small.val.idx), str(small.val.rec), "r")
    writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "two.idx"), str(tmp_path / "two.rec"), "w")
    for i, key in enumerate(small.val.keys()[:20]):
        header, payload = mx.recordio.unpack(reader.read_idx(key))
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, [float(header.label), 1.0], i, 0), payload))
    writer.close()
    val = ["--rec-val", str(small.val.rec), "--rec-val-idx", str(small.val.idx)]
    fails(train_supernet.main, ["--rec-train", str(truncated), "--rec-train-idx", str(small.train.idx), *val,
                                "--save-dir", str(tmp_path / "a")], capsys, "truncated.rec is truncated or damaged")
    fails(train_supernet.main, ["--rec-train", str(tmp_path / "two.rec"), "--rec-train-idx", str(tmp_path / "two.idx"),
                                *val, "--save-dir", str(tmp_path / "b")], capsys, "has 2 labels per image")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_whose_start_failed_can_be_started_again(small, tmp_path, capsys):
    """A folder holding only the args and log of a start that failed is no run to protect."""
    save = tmp_path / "run"
    save.mkdir()
    (save / "args.json").write_text("{}")
    (save / "train.log").write_text("a start that failed\n")
    fails(train_supernet.main, ["--resume", "--save-dir", str(save)], capsys, "its start failed: nothing was recorded")
    history = train_supernet.main(rec_flags(small) + ["--num-epochs", "1", "--batch-size", "32", "--val-paths", "1",
                                                      "--calib-images", "32", "-j", "1", "--no-progress",
                                                      "--save-dir", str(save)])
    assert len(history) == 1 and (save / "checkpoint").is_dir()


def test_val_every_validates_on_its_epochs_and_always_on_the_last(tiny_arch, small, tmp_path):
    save = tmp_path / "every"
    history = train_subnet.main([str(tiny_arch), "--num-epochs", "5", "--val-every", "2", "--batch-size", "64",
                                 "--save-dir", str(save), "--no-progress"] + rec_flags(small))
    assert [r["epoch"] for r in history if "val_top1" in r] == [1, 3, 4]
    assert read_meta(save / "tiny-net.params")["record"]["top1"] == history[-1]["val_top1"]
    assert (save / "curves.png").is_file()


def test_auto_validation_spends_at_most_a_quarter_and_always_validates_the_first_and_last(tiny_arch, small,
                                                                                          tmp_path, capsys):
    from oneshot_nas.runs.workers import Workers
    from oneshot_nas.train.loop import ValidationSchedule

    def epochs_validated(every, train_s, val_s, last=10):
        schedule, done = ValidationSchedule(every, last, Workers("device")), []
        for epoch in range(last):
            if schedule.due(epoch, train_s):
                schedule.validated(val_s)
                done.append(epoch)
        return done
    assert epochs_validated(3, 1.0, 2.0) == [2, 5, 8, 9]
    assert epochs_validated("auto", 1.0, 2.0) == [0, 6, 9]      # 6 s of training per 2 s of validation
    assert epochs_validated("auto", 1.0, 0.2) == list(range(10))   # cheap: every epoch
    history = train_subnet.main([str(tiny_arch), "--num-epochs", "3", "--batch-size", "64",
                                 "--save-dir", str(tmp_path / "auto"), "--no-progress"] + rec_flags(small))
    validated = [r["epoch"] for r in history if "val_top1" in r]
    assert validated[0] == 0 and validated[-1] == 2
    for bad in ("0", "-2", "often"):
        fails(train_subnet.main, [str(tiny_arch), "--val-every", bad, "--save-dir", str(tmp_path / "bad")], capsys,
              f"'{bad}': give a number of epochs >= 1, or auto")
    assert not (tmp_path / "bad").exists()


def test_gluoncv_and_oneshot_plus_spellings_mean_ours_or_say_what_to_type(capsys):
    from oneshot_nas.cli.flags import settings_from
    args = train_supernet.build_parser().parse_args(["--lr-mode", "step", "--lr-decay-period", "10",
                                                     "--num-epochs", "35"])
    assert settings_from(args).lr_decay_epochs == (10.0, 20.0, 30.0)
    both = train_supernet.build_parser().parse_args(["--lr-decay-period", "10", "--lr-decay-epoch", "5"])
    with pytest.raises(UserError, match="both place the decays"):
        settings_from(both)
    for flag, advice in ((["--train-upper-constraints", "flops-330-params-5.0"], "--max-macs 330M --max-params 5M"),
                         (["--use-se"], "--space oneshot+ has it"), (["--use-rec"], "RecordIO is read whenever"),
                         (["--block-choices", "0,1"], "one architecture is one string or file")):
        with pytest.raises(UserError, match=f"{flag[0]} is not a flag of .*{re.escape(advice)}"):
            train_supernet.build_parser().parse_args(flag)
