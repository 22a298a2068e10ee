"""`params.yaml`, validated: every run, rule and stage reads its settings through `load_params`.

Validation happens before any job starts, so a typo or an out-of-range value costs seconds, not a
GPU-day. Errors name the dotted key (`train.lr`) and say what is allowed. The package has one module
per reason to change:

- `schema`: the sections, their types and ranges (model options come from `pdd.models.options`);
- `plan` and `fingerprints`: the runs each table needs and the params keys each job reads;
- `loading`: the file, profiles, dotted `--set` overrides and error messages;
- `cli` (`pdd params check|show|plan|dvc`) and `dvc_pipeline` (dvc.yaml from the plan).

Nothing here imports torch: `pdd params check` validates on a machine without it.
"""

from pdd.config.loading import add_params_arguments, load_params, params_from_args
from pdd.config.plan import RunSpec
from pdd.config.schema import BASE_PROFILE, FIDELITIES, ModelOptions, Params

__all__ = ["BASE_PROFILE", "FIDELITIES", "ModelOptions", "Params", "RunSpec", "add_params_arguments", "load_params",
           "params_from_args"]
