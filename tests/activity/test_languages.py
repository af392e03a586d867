from __future__ import annotations

import pytest

from activity.languages import canonical_language, normalize_file_path


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("py", "python"), ("Python", "python"), ("python3", "python"), ("python2", "python"),
        (" PYTHON ", "python"),
        ("js", "javascript"), ("JavaScript", "javascript"),
        ("jsx", "javascriptreact"), ("javascriptreact", "javascriptreact"),
        ("ts", "typescript"), ("TypeScript", "typescript"), ("tsx", "typescriptreact"),
        ("golang", "go"), ("Go", "go"), ("rs", "rust"), ("Rust", "rust"),
        ("C", "c"), ("C++", "cpp"), ("cpp", "cpp"),
        ("C#", "csharp"), ("cs", "csharp"), ("csharp", "csharp"),
        ("Java", "java"), ("Kotlin", "kotlin"), ("rb", "ruby"), ("Ruby", "ruby"), ("PHP", "php"),
        ("bash", "shellscript"), ("sh", "shellscript"), ("zsh", "shellscript"), ("Shell Script", "shellscript"),
        ("shell", "shellscript"), ("PowerShell", "powershell"),
        ("JSON", "json"), ("yml", "yaml"), ("YAML", "yaml"), ("TOML", "toml"),
        ("md", "markdown"), ("Markdown", "markdown"), ("HTML", "html"), ("CSS", "css"), ("SCSS", "scss"),
        ("SQL", "sql"), ("Docker", "dockerfile"), ("Dockerfile", "dockerfile"), ("Makefile", "makefile"),
        ("plaintext", "plaintext"), ("Text", "plaintext"),
        ("Brainf*ck", "brainf*ck"),  # unknown: kept, lowercased
        ("  Zig  ", "zig"),
    ],
)  # fmt: skip
def test_aliases(language: str, expected: str) -> None:
    assert canonical_language(language, None) == expected


def test_language_wins_over_extension() -> None:
    assert canonical_language("plaintext", "/src/a.py") == "plaintext"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/src/app.py", "python"), ("C:\\proj\\Main.CS", "csharp"), ("web/App.tsx", "typescriptreact"),
        ("web/App.jsx", "javascriptreact"), ("index.mjs", "javascript"), ("main.go", "go"),
        ("lib.rs", "rust"), ("x.hpp", "cpp"), ("x.h", "c"), ("run.sh", "shellscript"),
        ("ci.yml", "yaml"), ("README.md", "markdown"), ("notes.txt", "plaintext"),
        ("/repo/Dockerfile", "dockerfile"), ("Dockerfile.prod", "dockerfile"), ("/repo/Makefile", "makefile"),
        ("GNUmakefile", "makefile"), ("file:///home/me/.bashrc", "shellscript"), ("build.ps1", "powershell"),
    ],
)  # fmt: skip
def test_extension_inference(path: str, expected: str) -> None:
    assert canonical_language(None, path) == expected
    assert canonical_language("", path) == expected
    assert canonical_language("   ", path) == expected


@pytest.mark.parametrize("path", [None, "", "/src/", "/src/LICENSE", "archive.xyz", "/a/.hidden"])
def test_unknown_inference_is_none(path: str | None) -> None:
    assert canonical_language(None, path) is None


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/home/me/proj/src/a.py", "/home/me/proj", "src/a.py"),
        ("/home/me/proj/src/a.py", "/home/me/proj/", "src/a.py"),
        ("/home/me/proj//src/./a.py", "/home/me/./proj", "src/a.py"),
        ("/home/me/proj/src/../lib/b.py", "/home/me/proj", "lib/b.py"),
        ("C:\\Users\\me\\proj\\src\\a.py", "C:\\Users\\me\\proj", "src/a.py"),
        ("c:\\Users\\Me\\Proj\\src\\a.py", "C:\\users\\me\\proj", "src/a.py"),  # Windows is case-insensitive
        ("C:\\Users\\me\\proj\\src\\a.py", None, "/Users/me/proj/src/a.py"),
        ("file:///c%3A/Users/me/proj/my%20file.py", "c:\\Users\\me\\proj", "my file.py"),
        ("file:///home/me/proj/a%23b.py", "/home/me/proj", "a#b.py"),
        ("FILE://localhost/home/me/proj/a.py", "/home/me/proj", "a.py"),
        ("/home/me/other/a.py", "/home/me/proj", "/home/me/other/a.py"),  # outside: stays absolute
        ("/home/me/project2/a.py", "/home/me/proj", "/home/me/project2/a.py"),  # prefix is not a parent
        ("/home/me/proj/../secret", "/home/me/proj", "/home/me/secret"),
        ("/Home/Me/Proj/a.py", "/home/me/proj", "/Home/Me/Proj/a.py"),  # POSIX is case-sensitive
        ("/home/me/proj", "/home/me/proj", "."),
        ("src/a.py", "/home/me/proj", "src/a.py"),  # already relative
        ("src\\sub\\a.py", None, "src/sub/a.py"),
        ("\\\\server\\share\\a.py", None, "/server/share/a.py"),
        ("//a//b///c.py", None, "/a/b/c.py"),
        ("/a/b.py", "/", "a/b.py"),
        ("/a/b.py", "", "/a/b.py"),
        ("/src/100%25.py", None, "/src/100%25.py"),  # plain paths are not percent-decoded
    ],
)
def test_normalize_file_path(path: str, root: str | None, expected: str) -> None:
    assert normalize_file_path(path, root) == expected


@pytest.mark.parametrize("path", [None, "", "   ", "C:"])
def test_normalize_empty(path: str | None) -> None:
    assert normalize_file_path(path) is None


def test_normalized_path_never_gains_dotdot() -> None:
    for path in ("/x/../../y", "C:\\..\\..\\y", "file:///../y"):
        assert ".." not in (normalize_file_path(path, "/x") or "")
