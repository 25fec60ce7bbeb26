"""Local paths and remote URIs (s3://, gs://...) behind one small interface."""

from __future__ import annotations

import os
import shutil

import pyarrow.fs as pafs


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    return path.removeprefix("file://")


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri)


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_remote(root) else os.path.join(root, *parts)


def upload_dir(local_dir: str, destination: str) -> None:
    """Copy a local folder to ``destination`` (replacing what was there)."""
    if not is_remote(destination):
        target = local_path(destination)
        tmp = target + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(local_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return
    fs, path = _fs(destination)
    fs.delete_dir_contents(path, missing_dir_ok=True)
    pafs.copy_files(local_dir, path, destination_filesystem=fs)


def download_dir(source: str, local_dir: str) -> str:
    """A local folder with ``source``'s files (``source`` itself when local)."""
    if not is_remote(source):
        return local_path(source)
    fs, path = _fs(source)
    pafs.copy_files(path, local_dir, source_filesystem=fs)
    return local_dir


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if not is_remote(path):
        try:
            with open(local_path(path), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
    fs, inner = _fs(path)
    if fs.get_file_info(inner).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(inner) as stream:
        return stream.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
    """Write ``text`` (atomically for local files)."""
    if not is_remote(path):
        target = local_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(target + ".tmp", target)
        return
    fs, inner = _fs(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as stream:
        stream.write(text.encode("utf-8"))


def list_dirs(root: str) -> list[str]:
    """Names of the folders directly under ``root`` (empty if it does not exist)."""
    if not is_remote(root):
        base = local_path(root)
        if not os.path.isdir(base):
            return []
        return sorted(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)))
    fs, inner = _fs(root)
    infos = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def remove_dir(path: str) -> None:
    if not is_remote(path):
        shutil.rmtree(local_path(path), ignore_errors=True)
        return
    fs, inner = _fs(path)
    fs.delete_dir(inner)
