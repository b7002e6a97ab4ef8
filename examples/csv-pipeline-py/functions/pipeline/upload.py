"""Upload over HTTP (function `upload-csv`): `PUT /api/uploads/{name}` with
the CSV as the body writes it into the blob container bound as `files`
(`uploads`), where the blob trigger of `import-csv` picks it up exactly as
it does a file copied in with `cp`.

Answers `202 {"file", "bytes", "status": "accepted"}`; `400` for a name
that is not `<letters, digits, . _ ->.csv` or a body that is empty or not
UTF-8 text.
"""

import gust
from gust import blob, log

from common import is_file_name
from report import error


def handle(request: gust.Request) -> gust.Response:
    """Stores the uploaded file."""
    name = request.params.get("name", "")
    if not is_file_name(name):
        return error(
            400,
            f"`{name}` is not a file name like sales-q1.csv (letters, digits, . _ - and .csv)",
        )
    body = request.body
    if not body:
        return error(400, "the body is empty; send the CSV file as the request body")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return error(400, "the body is not UTF-8 text; send a CSV file")
    try:
        blob.open("files").write(name, body)
    except gust.GustError as e:
        return error(500, f"cannot store {name}: {e}")
    log.info(f"{name}: {len(body)} bytes uploaded")
    return gust.Response.json({"file": name, "bytes": len(body), "status": "accepted"}, 202)
