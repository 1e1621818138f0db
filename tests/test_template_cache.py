"""The per-user caches (publish/template_cache.py, publish/user_cache.py): a cold build
reuses the templates an earlier build compiled and its Pygments stylesheet, an edited
template is compiled again, and a cache file that is corrupt, or that someone else could
have written, is never used."""

from __future__ import annotations

import io
import marshal
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
import pytest
from conftest_publishing import Project, eject, post_text
from jinja2.bccache import bc_magic

from raypress.config import load_config
from raypress.publish import reading, render
from raypress.publish.render import Theme

POISON = "POISONED-FROM-THE-CACHE"
POISON_PAGE = (
    f"<!DOCTYPE html><html lang=en><head><title>x</title></head><body>{POISON}</body></html>"
)


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_CACHE_HOME for this test alone (never the user's real cache)."""
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def site(project: Project, cache_home: Path) -> Project:
    project.post("one.md", post_text("Some words.\n", title="One", date="2024-01-02"))
    return project


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the templates Jinja compiles (parses) from now on."""
    names: list[str] = []
    original = jinja2.Environment._parse

    def counting(self: jinja2.Environment, source: str, name: str | None, filename: str | None):
        names.append(name or "")
        return original(self, source, name, filename)

    monkeypatch.setattr(jinja2.Environment, "_parse", counting)
    yield names


def cold_build(project: Project) -> dict[str, bytes]:
    """A build with no _site and no .raypress-cache (as a benchmark's cold run)."""
    shutil.rmtree(project.site, ignore_errors=True)
    shutil.rmtree(project.root / ".raypress-cache", ignore_errors=True)
    project.build_ok()
    return project.tree()


def cache_folder(cache_home: Path) -> Path:
    (folder,) = (cache_home / "raypress").glob("jinja-*")
    return folder


def post_template_file(project: Project) -> Path:
    """The cache file of post.html."""
    theme = Theme(load_config(project.root))
    env = theme.env
    source, filename, _ = env.loader.get_source(env, "post.html")
    assert env.bytecode_cache is not None
    bucket = env.bytecode_cache.get_bucket(env, "post.html", filename, source)
    return env.bytecode_cache._file(bucket)  # type: ignore[attr-defined]


def poison(project: Project) -> Path:
    """Replace post.html's cache file by code that prints POISON, under the checksum of
    post.html's real source (as someone who could write the file would)."""
    theme = Theme(load_config(project.root))
    env = theme.env
    source, filename, _ = env.loader.get_source(env, "post.html")
    cache = env.bytecode_cache
    assert cache is not None
    bucket = cache.get_bucket(env, "post.html", filename, source)
    bucket.code = env.compile(POISON_PAGE, "post.html", filename)
    path = cache._file(bucket)  # type: ignore[attr-defined]
    with path.open("wb") as f:
        bucket.write_bytecode(f)
    path.chmod(0o600)
    return path


def site_templates(project: Project) -> set[str]:
    """The site's own templates (the repository's overrides, copied into each project)."""
    folder = project.root / "templates"
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    return {n for n in found if n.endswith((".html", ".xml", ".txt"))}


def test_a_cold_build_reuses_the_theme_an_earlier_build_compiled(
    site: Project, cache_home: Path, compiled: list[str]
) -> None:
    first = cold_build(site)
    assert "post.html" in compiled and "base.html" in compiled
    folder = cache_folder(cache_home)
    assert folder.stat().st_mode & 0o777 == 0o700
    files = list(folder.iterdir())
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert all(f.name.startswith("theme-") and f.name.endswith(".cache") for f in files)
    own = list((site.root / ".raypress-cache").glob("jinja-*/site-*.cache"))
    assert len(own) == len(site_templates(site))  # the site's own, in the project

    compiled.clear()
    second = cold_build(site)
    assert set(compiled) == site_templates(site)  # not one of the theme's
    assert second == first  # byte for byte the same site


def test_an_edited_theme_template_is_compiled_again(
    site: Project, compiled: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theme = tmp_path / "theme"
    shutil.copytree(render.THEME_PATH, theme)
    monkeypatch.setattr(render, "THEME_PATH", theme)  # where the per-user cache serves
    monkeypatch.setattr(reading, "THEME_PATH", theme)  # where templates are looked up
    cold_build(site)
    template = theme / "post.html"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("</article>", "EDITED-MARK</article>", 1), encoding="utf-8")
    assert "EDITED-MARK" in template.read_text(encoding="utf-8")
    compiled.clear()
    cold_build(site)
    assert set(compiled) == site_templates(site) | {"post.html"}
    assert "EDITED-MARK" in site.page("2024/01/02/one/")


def test_an_edited_site_template_is_compiled_again(site: Project, compiled: list[str]) -> None:
    template = eject(site.root, "post.html")
    site.build_ok()
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("</article>", "EDITED-MARK</article>", 1), encoding="utf-8")
    compiled.clear()
    site.build_ok()  # the project's cache kept: only the edited template is compiled
    assert compiled == ["post.html"]
    assert "EDITED-MARK" in site.page("2024/01/02/one/")


def test_sites_with_other_urls_share_the_compiled_theme(
    site: Project, make_project: Callable[[str], Project], compiled: list[str]
) -> None:
    """Filters of constants that depend on the site (``"/x" | absolute_url``) must not be
    folded into the cached code: a second site gets its own URLs."""
    cold_build(site)
    assert "<icon>https://blog.example.org/assets/favicon.svg</icon>" in site.page("feed.xml")
    other = make_project("other")
    other.configure(title="Other", url="https://other.example.net", baseurl="/sub")
    other.post("one.md", post_text("Some words.\n", title="One", date="2024-01-02"))
    compiled.clear()
    other.build_ok()
    assert set(compiled) == site_templates(other)
    feed = other.page("feed.xml")
    assert "<icon>https://other.example.net/sub/assets/favicon.svg</icon>" in feed
    assert 'href="/sub/assets/' in other.page("2024/01/02/one/")


def test_a_template_error_is_reported_with_file_and_line_after_a_cached_build(
    site: Project,
) -> None:
    template = eject(site.root, "post.html")
    cold_build(site)
    lines = template.read_text(encoding="utf-8").splitlines()
    lines.insert(2, "{{ post.title | }}")
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = site.build()
    assert result.code != 0
    assert any("templates/post.html:3" in line for line in result.problem_lines), str(result)
    assert any("template syntax error" in line for line in result.problem_lines), str(result)


def _header_length(data: bytes) -> int:
    """Where the code starts in a cache file: after Jinja's magic and pickled checksum."""
    f = io.BytesIO(data)
    assert f.read(len(bc_magic)) == bc_magic
    pickle.load(f)
    return f.tell()


CORRUPTIONS = {
    "empty": lambda good: b"",
    "garbage": lambda good: b"not a cache file at all",
    "bad checksum pickle": lambda good: bc_magic + b"\x80\x02garbage",
    "header only": lambda good: good[: _header_length(good)],
    "truncated code": lambda good: good[: _header_length(good) + 100],
    "not code": lambda good: good[: _header_length(good)] + marshal.dumps(42),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_cache_file_is_compiled_again(
    site: Project, compiled: list[str], corruption: str
) -> None:
    clean = cold_build(site)
    path = post_template_file(site)
    good = path.read_bytes()
    path.write_bytes(CORRUPTIONS[corruption](good))
    compiled.clear()
    assert cold_build(site) == clean
    assert "post.html" in compiled
    assert path.read_bytes() == good  # written again, whole


def test_own_private_cache_file_is_used(site: Project) -> None:
    """The poisoned file below is used when it is this user's, private: so the tests that
    find it ignored are about ownership and permissions, not a file that never loads."""
    cold_build(site)
    poison(site)
    cold_build(site)
    assert POISON in site.page("2024/01/02/one/")


def test_a_cache_file_others_can_write_is_ignored(site: Project) -> None:
    clean = cold_build(site)
    path = poison(site)
    path.chmod(0o620)  # group-writable: someone else could have written it
    assert cold_build(site) == clean


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_cache_file_of_another_user_is_ignored(site: Project) -> None:
    clean = cold_build(site)
    path = poison(site)
    os.chown(path, 54321, 54321)
    assert cold_build(site) == clean


def test_a_cache_folder_others_can_write_is_not_used(site: Project, cache_home: Path) -> None:
    clean = cold_build(site)
    poison(site)
    folder = cache_folder(cache_home)
    folder.chmod(0o777)
    assert cold_build(site) == clean
    assert list((site.root / ".raypress-cache").glob("jinja-*/theme-*.cache"))  # there


def test_a_cache_link_is_not_followed(site: Project, tmp_path: Path) -> None:
    clean = cold_build(site)
    path = poison(site)
    elsewhere = tmp_path / "elsewhere.cache"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    assert cold_build(site) == clean


def test_no_usable_cache_folder_still_builds(
    site: Project, cache_home: Path, compiled: list[str]
) -> None:
    cache_home.parent.mkdir(parents=True, exist_ok=True)
    cache_home.write_text("a file where the cache folder would be")
    cold_build(site)
    assert "post.html" in compiled
    assert list((site.root / ".raypress-cache").glob("jinja-*/theme-*.cache"))  # there


def test_a_new_url_or_baseurl_reaches_links_of_constant_paths(site: Project) -> None:
    """``'/assets/favicon.svg' | relative_url`` is not frozen into the compiled template
    (it was: the project's cache kept the old baseurl after site.toml changed)."""
    site.build_ok()
    assert 'href="/assets/favicon.svg"' in site.page("")
    site.configure(title="T", url="https://moved.example.com", baseurl="/blog")
    site.build_ok()  # the project's cache and _site kept, as in everyday use
    assert 'href="/blog/assets/favicon.svg"' in site.page("")
    assert "<icon>https://moved.example.com/blog/assets/favicon.svg</icon>" in site.page("feed.xml")


def test_the_pygments_stylesheet_is_kept_per_user(site: Project, cache_home: Path) -> None:
    first = cold_build(site)
    (kept,) = (cache_home / "raypress" / "pygments").glob("*.css")
    assert kept.read_bytes() == first["assets/pygments.css"]
    assert kept.stat().st_mode & 0o777 == 0o600
    kept.write_text("/* from the cache */\n", encoding="utf-8")
    assert cold_build(site)["assets/pygments.css"] == b"/* from the cache */\n"
    kept.chmod(0o666)  # writable by others: not read, made again
    assert cold_build(site) == first
