"""`pdd export` (a run -> a model bundle) and `pdd predict` (a bundle or run -> scores and heatmaps)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdd.errors import ConfigError, DataError
from pdd.models.options import Scoring


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="write an evaluated run's model as a self-contained, pickle-free bundle folder")
    export.add_argument("--run", required=True, metavar="RUN_DIR", help="a trained and evaluated run directory")
    export.add_argument("--out", required=True, metavar="MODEL_DIR", help="the bundle folder (replaced atomically)")
    export.add_argument("--selection", choices=["best_of_test", "last"], default=None,
                        help="which evaluated epoch to export (default: the run's reporting.selection)")
    export.add_argument("--scoring", choices=[scoring.value for scoring in Scoring], default=Scoring.TS.value,
                        help="the anomaly score the bundle predicts with (default: %(default)s)")
    export.add_argument("--with-teachers", action="store_true",
                        help="also store the frozen teachers' weights (safetensors) so the bundle needs no other file")
    export.set_defaults(func=_export)

    predict = subparsers.add_parser(
        "predict", help="score images, DICOM files/series and NIfTI volumes; write predictions.csv, heatmaps and "
                        "index.html")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files, folders (recursive), DICOM files or series folders, .nii/.nii.gz volumes")
    predict.add_argument("--model", required=True, metavar="MODEL_DIR|RUN_DIR",
                         help="a bundle from `pdd export`, or an evaluated run directory")
    predict.add_argument("--out", required=True, type=Path, metavar="OUT_DIR")
    predict.add_argument("--threshold", type=float, default=None,
                         help="raw-score threshold for the label (default: the bundle's F1-max threshold)")
    predict.add_argument("--window", default=None, metavar="file|brain|subdural|bone|C,W",
                         help="window for DICOM and NIfTI: file (each file's own VOI LUT, window or NIfTI "
                              "cal_min/cal_max, else min-max), a preset, or center,width (default: the window "
                              "the model's training images used, e.g. brain for HeadCT, else file)")
    predict.add_argument("--axis", type=int, default=2, choices=[0, 1, 2],
                         help="NIfTI: score the volume, in RAS orientation, slice by slice along this axis "
                              "(0 sagittal, 1 coronal, 2 axial; default: %(default)s)")
    predict.add_argument("--save-maps", action="store_true", help="also write each raw anomaly map (maps/*.npz)")
    predict.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    predict.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    predict.add_argument("--teacher", action="append", default=[], metavar="NAME=FILE",
                         help="where a teacher's weights are, when not where the run had them (repeatable)")
    predict.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    predict.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> int:
    from pdd.engine import runs
    from pdd.engine.rundir import RunDir
    from pdd.inference.export import bundle_from_run, params_yaml_of, write_bundle

    bundle = bundle_from_run(args.run, args.selection, args.scoring)
    teachers = None
    if args.with_teachers:
        from pdd.inference.predictor import build_bundle_model, resolve_device

        model = build_bundle_model(bundle, resolve_device("cpu"))
        teachers = {name: {key: value for key, value in model.state_dict().items()
                           if key.startswith(f"teachers.{name}.")} for name in bundle.manifest.teachers}
    out = write_bundle(bundle, args.out, teachers, params_yaml_of(runs.RunRecord.read(RunDir(Path(args.run)))))
    threshold = bundle.manifest.calibration.threshold
    print(f"exported {bundle.description} -> {out} (threshold {threshold:.6g}; see {out / 'model.md'})")
    for note in bundle.warnings:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pdd.inference.outputs import PredictionWriter
    from pdd.inference.predictor import Predictor
    from pdd.inference.readers import InputProblem, parse_window

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    teacher_files = dict(_name_value(text) for text in args.teacher)
    if args.window is not None:
        parse_window(args.window)  # a bad --window fails before the model is loaded
    predictor = Predictor.from_path(args.model, device=args.device, teacher_files=teacher_files,
                                    threshold=args.threshold, batch_size=args.batch_size, window=args.window,
                                    axis=args.axis)
    for note in predictor.bundle.warnings:
        print(f"warning: {note}", file=sys.stderr)
    writer = PredictionWriter(args.out, predictor.calibration, predictor.threshold, predictor.bundle.description,
                              predictor.bundle.warnings, save_maps=args.save_maps)
    with writer, tqdm(desc="predict", unit="image", disable=not args.progress) as progress:
        def scorable():
            for item in predictor.read(args.inputs):
                if isinstance(item, InputProblem):
                    writer.add_problem(item)
                else:
                    yield item

        for prediction in predictor.predict_slices(scorable()):
            writer.add(prediction)
            progress.update()
        index = writer.finish()
    scored, failed = len(writer.cards), len(writer.problems)
    if scored == 0:
        raise DataError(f"nothing could be scored ({failed} input(s) failed; reasons in {args.out / 'errors.csv'})")
    print(f"scored {scored} image(s), {failed} input(s) failed -> {args.out / 'predictions.csv'}; open {index}")
    return 1 if failed else 0


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ConfigError(f"--teacher {text!r} must look like NAME=FILE, e.g. wrn50=weights/wide_resnet50.pth")
    return name, value
