"""Scanning the library: walking it, reading and hashing files, path -> metadata, and the
incremental update of the catalogue.

    from objlib.scan import scan_library
    summary = scan_library(settings, "~/library")          # -> ScanSummary

``walk`` knows the file system, ``filetypes`` what each file's content is and the MIME type
it is sent as, ``metadata`` the path conventions, ``scanner`` the catalogue.
"""

from objlib.scan.metadata import KEYS, QUALITIES, PathMetadata, compile_patterns, parse_path
from objlib.scan.scanner import ProgressFn, ScanSummary, scan_library
from objlib.scan.walk import check_root, is_ignored, list_library, read_content

__all__ = [
    "KEYS", "QUALITIES", "PathMetadata", "ProgressFn", "ScanSummary", "check_root",
    "compile_patterns", "is_ignored", "list_library", "parse_path", "read_content",
    "scan_library",
]
