"""Canonical language ids and workspace-relative file paths.

VS Code reports language ids ("typescriptreact"), WakaTime plugins report
display names ("TypeScript", "C#"), older clients send extensions ("py"). Per-
language metrics only make sense when all of those collapse to one id; the
canonical ids are VS Code's language identifiers, since most events come from
VS Code.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

# canonical id -> aliases (compared lowercased and stripped). The canonical id
# is itself always an alias.
_ALIASES: dict[str, tuple[str, ...]] = {
    "python": ("py", "python3", "python2", "py3", "pyi"),
    "javascript": ("js", "node", "nodejs", "mjs", "cjs", "ecmascript"),
    "javascriptreact": ("jsx", "javascript react"),
    "typescript": ("ts", "mts", "cts"),
    "typescriptreact": ("tsx", "typescript react"),
    "go": ("golang",),
    "rust": ("rs",),
    "c": ("h",),
    "cpp": ("c++", "cxx", "cc", "hpp"),
    "csharp": ("c#", "cs"),
    "java": (),
    "kotlin": ("kt", "kts"),
    "swift": (),
    "scala": ("sc",),
    "ruby": ("rb",),
    "php": (),
    "perl": ("pl",),
    "lua": (),
    "r": (),
    "dart": (),
    "elixir": ("ex", "exs"),
    "haskell": ("hs",),
    "objective-c": ("objc", "objectivec"),
    # VS Code's id; WakaTime says "Bash" or "Shell Script".
    "shellscript": ("shell", "shell script", "bash", "sh", "zsh", "ksh", "fish"),
    "powershell": ("ps1", "pwsh", "posh"),
    "bat": ("batch", "cmd"),
    "json": ("jsonc", "json5"),
    "yaml": ("yml",),
    "toml": (),
    "xml": ("xsl", "xsd"),
    "markdown": ("md", "mdx"),
    "html": ("htm", "xhtml"),
    "css": (),
    "scss": ("sass",),
    "less": (),
    "sql": ("plsql", "tsql", "postgres", "mysql"),
    "vue": ("vue.js",),
    "svelte": (),
    "graphql": ("gql",),
    "dockerfile": ("docker", "containerfile"),
    "makefile": ("make", "mk", "gnumakefile"),
    "ini": ("cfg", "properties"),
    "plaintext": ("text", "txt", "plain text", "plain"),
}

_ALIAS_TO_CANONICAL: dict[str, str] = {
    alias: canonical for canonical, aliases in _ALIASES.items() for alias in (canonical, *aliases)
}

_EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "typescriptreact",
    ".go": "go",
    ".rs": "rust",
    ".c": "c", ".h": "c",
    ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp",
    ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala", ".sc": "scala",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl", ".pm": "perl",
    ".lua": "lua",
    ".r": "r",
    ".dart": "dart",
    ".ex": "elixir", ".exs": "elixir",
    ".hs": "haskell",
    ".m": "objective-c",
    ".sh": "shellscript", ".bash": "shellscript", ".zsh": "shellscript", ".ksh": "shellscript",
    ".fish": "shellscript",
    ".ps1": "powershell", ".psm1": "powershell", ".psd1": "powershell",
    ".bat": "bat", ".cmd": "bat",
    ".json": "json", ".jsonc": "json", ".json5": "json",
    ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml",
    ".xml": "xml", ".xsd": "xml", ".xsl": "xml",
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".html": "html", ".htm": "html",
    ".css": "css",
    ".scss": "scss", ".sass": "scss",
    ".less": "less",
    ".sql": "sql",
    ".vue": "vue",
    ".svelte": "svelte",
    ".graphql": "graphql", ".gql": "graphql",
    ".dockerfile": "dockerfile",
    ".mk": "makefile",
    ".ini": "ini", ".cfg": "ini",
    ".txt": "plaintext", ".text": "plaintext",
}  # fmt: skip

# Files recognised by their whole (lowercased) name, checked before extensions.
_SPECIAL_NAMES: dict[str, str] = {
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "makefile": "makefile",
    "gnumakefile": "makefile",
    ".bashrc": "shellscript",
    ".bash_profile": "shellscript",
    ".profile": "shellscript",
    ".zshrc": "shellscript",
}


def _language_from_path(file_path: str) -> str | None:
    name = file_path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip().lower()
    if not name:
        return None
    if name in _SPECIAL_NAMES:
        return _SPECIAL_NAMES[name]
    # "Dockerfile.prod" and "Makefile.linux" are common variants.
    stem = name.split(".", 1)[0]
    if stem in ("dockerfile", "containerfile", "makefile") and "." in name:
        return _SPECIAL_NAMES[stem]
    ext = posixpath.splitext(name)[1]
    return _EXTENSIONS.get(ext)


def canonical_language(language: str | None, file_path: str | None) -> str | None:
    """The canonical lowercase language id.

    A non-empty `language` wins: known aliases map to their canonical id and
    unknown names are kept lowercased and stripped. Only when it is missing or
    blank is the language inferred from `file_path`; None if that fails too.
    """
    if language is not None:
        key = language.strip().lower()
        if key:
            return _ALIAS_TO_CANONICAL.get(key, key)
    if file_path:
        return _language_from_path(file_path)
    return None


_FILE_URI_RE = re.compile(r"file://", re.IGNORECASE)
_DRIVE_RE = re.compile(r"/?[A-Za-z]:")


def _normalize(path: str) -> tuple[str, bool]:
    """(normalized POSIX path, whether it looked like a Windows path)."""
    if _FILE_URI_RE.match(path):
        # VS Code encodes "c:" as "c%3A" in URIs, so decode before the drive check.
        path = unquote(path[len("file://") :])
        if path.lower().startswith("localhost/"):
            path = path[len("localhost") :]
        elif not path.startswith("/"):
            # file://server/share is a UNC path: keep the host as a component.
            path = "//" + path
    windows = "\\" in path
    path = path.replace("\\", "/")
    drive = _DRIVE_RE.match(path)
    if drive:
        windows = True
        path = path[drive.end() :]
    if not path:
        return "", windows
    path = posixpath.normpath(path)
    # normpath keeps exactly two leading slashes (POSIX leaves their meaning
    # open); here they only come from UNC paths and mean nothing special.
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path, windows


def normalize_file_path(path: str | None, workspace_root: str | None = None) -> str | None:
    """A POSIX path, relative to `workspace_root` when it lies under it.

    Backslashes become "/", a drive letter is dropped, "." and duplicate
    slashes are collapsed, a file:// URI is stripped and percent-decoded.
    A path outside the root stays absolute: the result never contains ".."
    invented here. Windows paths match the root case-insensitively, like the
    file system they come from. Returns None for a missing or empty path.
    """
    if path is None or not path.strip():
        return None
    normalized, path_is_windows = _normalize(path)
    if not normalized:
        return None
    if not workspace_root or not workspace_root.strip() or not normalized.startswith("/"):
        return normalized
    root, root_is_windows = _normalize(workspace_root)
    if not root.startswith("/"):
        return normalized
    fold = path_is_windows or root_is_windows
    # Compare component by component: lowercasing can change a string's
    # length ("İ"), so slicing the original by a lowercased prefix is unsafe.
    parts = normalized.split("/")[1:]
    root_parts = [p for p in root.split("/")[1:] if p]
    if len(parts) < len(root_parts):
        return normalized
    for part, root_part in zip(parts, root_parts, strict=False):
        if (part.lower() != root_part.lower()) if fold else (part != root_part):
            return normalized
    rest = parts[len(root_parts) :]
    return "/".join(rest) if rest else "."
