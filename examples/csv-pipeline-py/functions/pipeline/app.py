"""The csv-pipeline example in Python: one folder behind three functions.

| function     | trigger                                  | module     |
|--------------|------------------------------------------|------------|
| `import-csv` | blob `uploads/{name}.csv`                | `importer` |
| `upload-csv` | `PUT /api/uploads/{name}`                | `upload`   |
| `report`     | `GET /api/summary`, `GET /api/imports`   | `report`   |

The event handler is the import; HTTP requests are told apart by the
function name Gust passes in.
"""

import gust

import importer
import report
import upload

_HTTP = {"upload-csv": upload.handle, "report": report.handle}


@gust.http
def handle_request(request: gust.Request) -> gust.Response:
    function = request.header("x-gust-function") or ""
    handler = _HTTP.get(function)
    if handler is None:
        return report.error(500, f"unknown function `{function}`")
    return handler(request)


@gust.event
def handle_event(event: gust.Event) -> None:
    importer.handle(event)
