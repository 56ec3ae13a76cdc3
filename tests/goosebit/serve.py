"""Runs goosebit (PyPI) on loopback for the fleet tests, its database made fresh.

Usage: serve.py DIR PORT SEED.json

It speaks plain HTTP on 127.0.0.1: devices reach it through nginx, which keeps the TLS and
says so in `X-Forwarded-Proto` (uvicorn's proxy headers), so goosebit's links are https://
ones on the address the device used — goosebit behind a TLS proxy, as it is deployed.

goosebit is used as it is published, with two things done from outside it:

* Slate bundles are put into its software table directly (goosebit's upload parses SWU and
  RAUC files only): each entry of SEED.json ({"path", "version", "board"}) becomes a
  `software` row (file:// URI, size, sha1 as goosebit keeps) compatible with the hardware
  model `board`, which is what a Slate device reports as `hw_boardname`.
* goosebit 0.2.12 announces an artefact's sha1 only; Slate devices require a sha256. The one
  upstreamable change is to announce it beside the sha1: this script wraps goosebit's
  `generate_chunk` to add `hashes.sha256` of the local file, and changes nothing else.

An admin user `admin` / `slate-e2e` can call goosebit's REST API (`POST /login`).
"""

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path


def main() -> None:
    work, port, seed = sys.argv[1:4]
    work, seed = (str(Path(p).resolve()) for p in (work, seed))
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GOOSEBIT_DB_URI"] = f"sqlite:///{work / 'goosebit.sqlite3'}"
    os.environ["GOOSEBIT_ARTIFACTS_DIR"] = str(work / "artifacts")
    os.environ["GOOSEBIT_POLL_TIME"] = "00:00:05"
    os.environ["GOOSEBIT_PORT"] = port
    os.environ["GOOSEBIT_TRACK_DEVICE_IP"] = "false"
    os.chdir(work)

    import uvicorn
    from tortoise import Tortoise

    import goosebit
    import goosebit.updater.controller.v1.routes as ddi_routes
    from goosebit.db.config import TORTOISE_CONF
    from goosebit.db.models import Hardware, Software
    from goosebit.users import create_user

    original = ddi_routes.generate_chunk
    sha256_of: dict[str, str] = {}

    async def generate_chunk_with_sha256(request, device):  # type: ignore[no-untyped-def]
        chunks = await original(request, device)
        for chunk in chunks:
            for artifact in chunk.artifacts:
                _, software = await goosebit.device_manager.DeviceManager.get_update(device)
                if software is None or not software.local:
                    continue
                path = str(software.path)
                if path not in sha256_of:
                    sha256_of[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                artifact.hashes["sha256"] = sha256_of[path]
        return chunks

    ddi_routes.generate_chunk = generate_chunk_with_sha256

    async def prepare() -> None:
        await Tortoise.init(config=TORTOISE_CONF)
        await Tortoise.generate_schemas()
        await create_user("admin", "slate-e2e", ["*"])
        for entry in json.loads(Path(seed).read_text()):
            data = Path(entry["path"]).read_bytes()
            hardware = (await Hardware.get_or_create(model=entry["board"], revision="default"))[0]
            software = await Software.create(
                uri=Path(entry["path"]).resolve().as_uri(),
                size=len(data),
                hash=hashlib.sha1(data).hexdigest(),
                version=entry["version"],
            )
            await software.compatibility.add(hardware)
        await Tortoise.close_connections()

    asyncio.run(prepare())
    uvicorn.run(
        goosebit.app,
        host="127.0.0.1",
        port=int(port),
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
