"""Reading a user's JSON file: a missing or undecodable file is a UserError with the caller's words."""
import json
from pathlib import Path

from .errors import UserError


def read_json(path, missing, invalid):
    """The parsed JSON at `path`. `missing` and `invalid` are the messages for a file that is not
    there or does not parse; "{path}" and (invalid only) "{err}" in them are filled in (by plain
    replacement, so a path with braces in it is safe)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(missing.replace("{path}", str(path)))
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(invalid.replace("{path}", str(path)).replace("{err}", str(err))) from None
