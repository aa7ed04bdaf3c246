"""python -m oneshot_nas.export NAME.params --to symbol,onnx,pytorch,int8 [--merge-bn] [--out-dir DIR]

The export command; what each target is and how it is checked: oneshot_nas/export/formats.py.
"""
import logging
from pathlib import Path

from .. import cli
from ..cli import ArgumentParser
from ..cli.flags import add_data_flags
from ..data import sources as data
from ..errors import UserError
from ..runs.modelfile import read_meta
from .formats import TARGETS, __doc__ as FORMATS_DOC, check_packages, export, load_subnet, parse_arch, parse_targets

log = logging.getLogger("oneshot_nas.export")


def main(argv=None):
    parser = ArgumentParser(prog="python -m oneshot_nas.export", description=FORMATS_DOC)
    parser.add_argument("model", help="NAME.params with NAME.json beside it")
    parser.add_argument("--to", default="symbol", help=f"comma-separated targets: {','.join(TARGETS)}")
    parser.add_argument("--merge-bn", action="store_true", help="fold BatchNorm into the convolutions")
    parser.add_argument("--out-dir", help="where to write (default: beside the model)")
    parser.add_argument("--arch", help="architecture (models/NAME.json or its string) to extract "
                                       "from a supernet file")
    group = add_data_flags(parser, "data for the checks, int8 calibration/validation and BN "
                                   "recalibration (default: the embedded digits)")
    group.add_argument("--calib-batches", type=int, default=4, help="int8 calibration batches")
    group.add_argument("--batch-size", type=int, default=32, help="images per int8 calibration batch")
    group.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive",
                       help="int8 ranges: each layer's min/max (naive) or the KL-optimal threshold (entropy)")
    group.add_argument("--val-images", type=int, help="evaluate int8 on at most this many images")
    group.add_argument("--latency-repeats", type=int, default=20,
                       help="timed forward passes per latency figure (median)")
    group.add_argument("--bn-calib-images", type=int, default=1024,
                       help="training images to recalibrate BN of a path extracted from a supernet")
    args = parser.parse_args(argv)
    cli.setup_logging()
    targets = parse_targets(args.to)
    check_packages(targets)
    if min(args.calib_batches, args.batch_size, args.latency_repeats, args.bn_calib_images) < 1:
        raise UserError("--calib-batches, --batch-size, --latency-repeats and --bn-calib-images "
                        "must be positive")
    arch = parse_arch(args.arch) if args.arch else None
    dataset = _dataset(args, needed="int8" in targets or arch is not None,
                       num_classes=args.num_classes or _num_classes(args.model, arch))
    net, _ = load_subnet(args.model, arch, dataset, args.bn_calib_images)
    model = Path(args.model)
    summary = export(net, name=model.stem, out_dir=args.out_dir or model.parent, targets=targets,
                     merge_bn=args.merge_bn, dataset=dataset, calib_batches=args.calib_batches,
                     batch_size=args.batch_size, calib_mode=args.calib_mode,
                     val_images=args.val_images, latency_repeats=args.latency_repeats)
    for f in summary["files"]:
        log.info("wrote %s", f)
    if not summary["ok"]:
        raise SystemExit("an export does not reproduce the original network's outputs (see above)")
    return summary


def _dataset(args, needed, num_classes):
    """The dataset the flags name (the embedded digits without flags). Only int8 and BN
    recalibration need one; the checks can fall back to noise when the digits do not fit."""
    flags = dict(rec_train=args.rec_train, rec_train_idx=args.rec_train_idx, rec_val=args.rec_val,
                 rec_val_idx=args.rec_val_idx, data_dir=args.data_dir, digits_view=args.digits_view)
    try:
        return data.resolve_dataset(num_classes=num_classes, **flags)
    except UserError:
        if needed or any(v for k, v in flags.items() if k != "digits_view"):
            raise
        return None


def _num_classes(model, arch):
    if arch is not None:
        return arch.space.num_classes
    config = read_meta(model).get("space_config")
    return config.get("num_classes") if config else None


if __name__ == "__main__":
    cli.run(main)
