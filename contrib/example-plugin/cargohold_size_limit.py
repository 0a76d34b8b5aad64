from flask import current_app
from cargohold import hookimpl
from cargohold.config import Size
from cargohold.errors import Denied


@hookimpl
def cargohold_config_schema():
    return {"sizelimit": {"maxbytes": Size}}


def refuse_over_limit(repository: str, size: int | None) -> None:
    limit = (current_app.config["CARGOHOLD"].get("sizelimit") or {}).get("maxbytes")
    if limit is not None and size is not None and size > limit:
        raise Denied(f"{size} bytes is over the limit of {limit}", detail={"repository": repository, "limit": limit})


cargohold_before_blob_upload = hookimpl(lambda repository, size: refuse_over_limit(repository, size))
cargohold_before_blob_commit = hookimpl(lambda repository, size: refuse_over_limit(repository, size))
