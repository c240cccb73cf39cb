"""The files of a Workflow Run Crate: each file a run read or wrote, once, with its SHA-256.

A file is named in the crate by where it lies in the project (``runs/refine3d/maps/map.mrc``);
raw data outside the project by its name under ``external/``. Without ``--with-data`` a file
is *referenced*: a ``File`` entity with a local identifier (``#runs/...``), its project path
as ``alternateName``, its size and SHA-256, and nothing copied. With it, the file is copied to
that path inside the crate and listed in the crate's ``hasPart``.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from rocrate.model.contextentity import ContextEntity
from rocrate.model.entity import Entity
from rocrate.rocrate import ROCrate

from orchestrator.export.destination import Destination, ProgressCallback
from orchestrator.export.processing import portable

_FORMATS = {".mrc": "application/octet-stream", ".mrcs": "application/octet-stream", ".star": "text/plain",
            ".log": "text/plain", ".npz": "application/zip", ".json": "application/json"}


def encoding_format(name: str) -> str:
    """The media type of a file, by its extension (EM formats have none registered: octet-stream)."""
    suffix = PurePosixPath(name).suffix.lower()
    return _FORMATS.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class CrateFiles:
    """The file entities of one crate, made once per path."""

    def __init__(self, crate: ROCrate, project_dir: Path, destination: Destination, with_data: bool,
                 progress: ProgressCallback | None) -> None:
        self.crate = crate
        self.project_dir = project_dir
        self.destination = destination
        self.with_data = with_data
        self.progress = progress
        self.fingerprints: dict[str, dict[str, Any]] = {}  # path as the records write it -> size, sha256
        self.copied_bytes = 0
        self.copied = 0
        self.missing: list[str] = []
        self.warnings: list[str] = []
        self._entities: dict[str, Entity] = {}
        self._names: set[str] = set()

    def learn(self, entries: list[dict[str, Any]]) -> None:
        """Fingerprints from a provenance record (``files.written`` or ``files.read_raw``)."""
        for entry in entries:
            if entry.get("sha256"):
                self.fingerprints.setdefault(entry["path"], entry)

    def entity(self, path: str, description: str | None = None) -> Entity:
        """The entity of the file ``path`` (project-relative, or absolute outside the project)."""
        if path in self._entities:
            entity = self._entities[path]
            if description and not entity.get("description"):
                entity["description"] = description
            return entity
        name = self._crate_name(path)
        fingerprint = self.fingerprints.get(path, {})
        properties: dict[str, Any] = {"name": PurePosixPath(path).name, "encodingFormat": encoding_format(path)}
        if fingerprint.get("sha256"):
            properties["sha256"] = fingerprint["sha256"]
            properties["contentSize"] = str(fingerprint["size"])
        if description:
            properties["description"] = description
        source = Path(path) if Path(path).is_absolute() else self.project_dir / path
        if self.with_data and source.is_file():
            copied = self.destination.copy(source, name, self.progress)
            self.copied += 1
            self.copied_bytes += copied.size
            if fingerprint.get("sha256") and fingerprint["sha256"] != copied.sha256:
                self.warnings.append(f"{path} changed since its run finished: the record has sha256 "
                                     f"{fingerprint['sha256']}, the copy {copied.sha256}")
            properties.update(sha256=copied.sha256, contentSize=str(copied.size))
            if name != path:
                properties["alternateName"] = portable(path, self.project_dir)
            entity = self.crate.add_file(dest_path=name, properties=properties)
        else:
            if self.with_data:
                self.missing.append(path)
            properties["@type"] = "File"
            properties["alternateName"] = portable(path, self.project_dir)
            entity = self.crate.add(ContextEntity(self.crate, "#" + quote(name, safe="/._-~"), properties=properties))
        self._entities[path] = entity
        return entity

    def folder(self, path: str, description: str) -> Entity:
        """A folder of the project (an output that is a folder) as a ``Dataset`` whose parts are the
        files in it that the records fingerprinted."""
        if path in self._entities:
            return self._entities[path]
        inside = sorted(known for known in self.fingerprints if known.startswith(path.rstrip("/") + "/"))
        parts = [self.entity(known) for known in inside]
        properties: dict[str, Any] = {"name": PurePosixPath(path).name, "description": description}
        if self.with_data and parts and all(part.id == known for part, known in zip(parts, inside, strict=True)):
            entity = self.crate.add_dataset(dest_path=path.rstrip("/") + "/", properties=properties)
        else:
            properties.update({"@type": "Dataset", "alternateName": portable(path, self.project_dir)})
            entity = self.crate.add(ContextEntity(self.crate, "#" + quote(path.rstrip("/"), safe="/._-~") + "/",
                                                  properties=properties))
        if parts:
            entity["hasPart"] = parts
        self._entities[path] = entity
        return entity

    @property
    def count(self) -> int:
        """How many files (and folders) of the runs the crate names."""
        return len(self._entities)

    def _crate_name(self, path: str) -> str:
        """Where the file goes in the crate: its project path, or ``external/NAME`` (made unique)."""
        if not Path(path).is_absolute():
            name = path
        else:
            base = PurePosixPath(path).name
            name, number = f"external/{base}", 1
            while name in self._names:
                number += 1
                name = f"external/{number}-{base}"
        self._names.add(name)
        return name
