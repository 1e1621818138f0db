"""``raypress new``, ``raypress theme``, a theme folder anywhere, and the installed tool: a wheel
built from this checkout, installed in a fresh venv outside it, makes and builds a new blog."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest_publishing import REPO, SITE_TITLE, Project, parse_page, python_command, run_command

from raypress import __version__
from raypress.cli import main
from raypress.commands.new import STARTER, WORKFLOW
from raypress.config import load_config
from raypress.publish.posts import read_post
from raypress.publish.reading import available_layouts
from raypress.theme import THEME_PATH

BIN = Path(sys.executable).parent
ACTIONLINT = shutil.which("actionlint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
OFFICIAL_PAGES_ACTIONS = {"actions/configure-pages", "actions/upload-pages-artifact"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def actionlint(workflow: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT, "actionlint is not installed (pip install -c constraints.txt -e '.[test]')"
    return subprocess.run(
        [ACTIONLINT, "-no-color", workflow.name],
        cwd=workflow.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- raypress new SITE -------------------------------------------------------------------


def test_new_site_writes_a_starter_blog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "new", str(tmp_path / "my-blog"))
    assert (code, err) == (0, ""), err
    site = tmp_path / "my-blog"
    today = datetime.now().strftime("%Y-%m-%d")
    for name in (
        "site.toml",
        "requirements.txt",
        ".gitignore",
        "README.md",
        f"posts/{today}-welcome-to-raypress.md",
        "snippets/README.md",
        "templates/README.md",
        WORKFLOW,
    ):
        assert (site / name).is_file(), name
        assert name in out
    config = load_config(site)
    assert config.title == "My blog"
    requirements = (site / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert f"raypress=={__version__}" in requirements
    assert {"/_site/", "/.raypress-cache/"} <= set(
        (site / ".gitignore").read_text(encoding="utf-8").splitlines()
    )
    post = read_post(next((site / "posts").glob("*.md")), config, available_layouts(config))
    assert post.title == "Welcome to raypress" and post.date.strftime("%Y-%m-%d") == today
    assert not list((site / "snippets").glob("*.json")), "the first build runs the post"


def test_the_workflow_builds_checks_and_deploys_with_githubs_own_actions(tmp_path: Path) -> None:
    main(["new", str(tmp_path / "blog")])
    workflow = yaml.safe_load((tmp_path / "blog" / WORKFLOW).read_text(encoding="utf-8"))
    jobs = workflow["jobs"]
    assert set(workflow[True]) >= {"push", "pull_request"}  # YAML 1.1 reads "on" as True
    steps = {job: [s.get("uses", "").split("@")[0] for s in jobs[job]["steps"]] for job in jobs}
    runs = {job: " ".join(s.get("run", "") for s in jobs[job]["steps"]) for job in jobs}
    assert "raypress check --junit-xml" in runs["check"]
    assert jobs["check"]["if"] == "github.event_name == 'pull_request'"
    assert "raypress build" in runs["build"]
    assert set(steps["build"]) >= OFFICIAL_PAGES_ACTIONS
    assert steps["deploy"] == ["actions/deploy-pages"]
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    for job in ("check", "build"):
        python = next(s for s in jobs[job]["steps"] if "setup-python" in s.get("uses", ""))
        assert python["with"]["cache"] == "pip"
        assert python["with"]["cache-dependency-path"] == "requirements.txt"


def test_actionlint_passes_on_the_workflow_and_fails_a_broken_one(tmp_path: Path) -> None:
    main(["new", str(tmp_path / "blog")])
    workflow = tmp_path / "blog" / WORKFLOW
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = workflow.with_name("broken.yml")
    text = workflow.read_text(encoding="utf-8")
    broken.write_text(text.replace("cache-dependency-path", "cache-dependency-pth"), "utf-8")
    result = actionlint(broken)
    assert result.returncode == 1
    assert 'input "cache-dependency-pth" is not defined' in result.stdout


def test_new_site_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "blog"
    (site / "posts").mkdir(parents=True)
    (site / "site.toml").write_text('title = "Mine"\n', encoding="utf-8")
    (site / "notes.txt").write_text("keep me\n", encoding="utf-8")
    code, out, err = cli(capsys, "new", str(site))
    assert code == 1 and out == ""
    assert err.startswith(f"{site}: error: already has site.toml; nothing was written")
    assert "--force" in err
    assert sorted(p.name for p in site.iterdir()) == ["notes.txt", "posts", "site.toml"]
    assert cli(capsys, "new", str(site), "--force")[0] == 0
    assert 'title = "Blog"' in (site / "site.toml").read_text(encoding="utf-8")
    assert (site / "notes.txt").read_text(encoding="utf-8") == "keep me\n"


# -- raypress new post ---------------------------------------------------------------------


def test_new_post_writes_a_dated_post_with_front_matter(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.configure(title=SITE_TITLE, timezone="Europe/Paris")
    title = 'Größe: a "quoted" title'
    code, out, err = cli(capsys, "new", "post", title, "--root", str(project.root))
    assert (code, err) == (0, "")
    today = datetime.now(load_config(project.root).zone).strftime("%Y-%m-%d")
    name = f"posts/{today}-größe-a-quoted-title.md"
    assert out == f"wrote {name}\n"
    config = load_config(project.root)
    post = read_post(project.root / name, config, available_layouts(config))
    assert post.title == title
    assert post.date.utcoffset() == datetime.now(config.zone).utcoffset()
    assert cli(capsys, "new", "post", title, "--root", str(project.root))[0] == 1
    result = project.build("--future")
    assert result.code == 0, str(result)


def test_new_post_needs_a_title(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "new", "post", "--root", str(tmp_path))
    assert code == 2 and 'raypress new post "My title"' in err
    code, _, err = cli(capsys, "new", "post", "!!!", "--root", str(tmp_path))
    assert code == 1 and "no letters or digits" in err


# -- raypress theme ------------------------------------------------------------------------


def theme_names() -> set[str]:
    return {
        p.relative_to(THEME_PATH).as_posix()
        for p in THEME_PATH.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def test_theme_eject_one_file_then_the_copy_overrides_the_theme(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(project.root)
    code, out, err = cli(capsys, "theme", "eject", "post", "--root", root)
    assert (code, err) == (0, "")
    assert "copied templates/post.html" in out
    copy = project.root / "templates" / "post.html"
    assert copy.read_bytes() == (THEME_PATH / "post.html").read_bytes()
    copy.write_text(copy.read_text(encoding="utf-8").replace("<article", "<article data-mine"))
    project.post("2024-01-01-a.md", "---\ntitle: A\n---\nA.\n")
    project.build_ok()
    assert "<article data-mine" in project.page("2024/01/01/a/")
    code, _, err = cli(capsys, "theme", "eject", "post.html", "--root", root)
    assert code == 1
    assert err.startswith("templates: error: already has post.html; nothing was copied")
    assert "data-mine" in copy.read_text(encoding="utf-8")
    assert cli(capsys, "theme", "eject", "post.html", "--force", "--root", root)[0] == 0
    assert "data-mine" not in copy.read_text(encoding="utf-8")
    code, out, _ = cli(capsys, "theme", "list", "--root", root)
    assert "post.html  (overridden by templates/)" in out.splitlines()


def test_theme_eject_all_copies_every_file_unless_one_exists(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(project.root)
    existing = sorted(p.name for p in (project.root / "templates").rglob("*") if p.is_file())
    assert existing == ["footer.html"]  # the example blog's override of partials/footer.html
    code, _, err = cli(capsys, "theme", "eject", "--root", root)
    assert code == 1 and "already has partials/footer.html; nothing was copied" in err
    assert not (project.root / "templates" / "base.html").exists()
    code, out, _ = cli(capsys, "theme", "eject", "assets", "--root", root)
    assert code == 0 and "copied templates/assets/style.css" in out
    assert cli(capsys, "theme", "eject", "--force", "--root", root)[0] == 0
    copied = {
        p.relative_to(project.root / "templates").as_posix()
        for p in (project.root / "templates").rglob("*")
        if p.is_file()
    }
    assert copied == theme_names()
    project.build_ok()


def test_theme_eject_names_the_files_it_has(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "theme", "eject", "nope.html", "--root", str(project.root))
    assert code == 1 and out == ""
    assert err.startswith("nope.html: error: the built-in theme has no such file (its files: ")
    assert "partials/footer.html" in err


def test_a_theme_folder_outside_the_project_is_used(tmp_path: Path, project: Project) -> None:
    theme = tmp_path / "shared-theme"
    (theme / "partials").mkdir(parents=True)
    (theme / "assets").mkdir()
    (theme / "partials" / "footer.html").write_text("<p>shared footer</p>\n", encoding="utf-8")
    (theme / "assets" / "extra.css").write_text("p { color: teal }\n", encoding="utf-8")
    project.configure(title=SITE_TITLE, templates_dir=str(Path("..") / "shared-theme"))
    project.post("2024-01-01-a.md", "---\ntitle: A\n---\nA.\n")
    project.build_ok()
    assert "<p>shared footer</p>" in project.page("")
    assert (project.site / "assets" / "extra.css").read_text(encoding="utf-8") == (
        "p { color: teal }\n"
    )
    (theme / "partials" / "footer.html").write_text("<p>edited</p>\n", encoding="utf-8")
    project.build_ok()
    assert "<p>edited</p>" in project.page(""), "an edit of the outside theme rebuilds"


def test_a_static_folder_outside_the_project_is_refused_by_name(project: Project) -> None:
    (project.root.parent / "elsewhere").mkdir()
    project.configure(title=SITE_TITLE, static_dir="../elsewhere")
    result = project.build()
    assert result.code == 1
    assert result.problem_lines[0].startswith("../elsewhere: error: folder ")
    assert "is outside the project" in result.problem_lines[0]


# -- the program's name in its usage ----------------------------------------------------


def test_usage_names_the_command_as_it_was_run(tmp_path: Path) -> None:
    as_module = run_command(python_command("-m", "raypress", "--help"), cwd=REPO)
    assert as_module.stdout.startswith("usage: python -m raypress ")
    as_script = run_command(python_command("build.py", "--help"), cwd=REPO)
    assert as_script.stdout.startswith("usage: build.py ")
    installed = run_command([str(BIN / "raypress"), "--help"], cwd=tmp_path)
    assert installed.stdout.startswith("usage: raypress ")
    assert "{build,check,serve,new,theme}" in installed.stdout


# -- the installed tool --------------------------------------------------------------------


def isolated_env(venv: Path) -> dict[str, str]:
    """The environment of a shell in which only ``venv`` is active (no trace of ours)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "RAY_ADDRESS")
        and not k.startswith("RAYPRESS_")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    )
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_wheel_installed_outside_the_checkout_builds_a_new_blog(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building must not write into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "raypress", source / "raypress", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = isolated_env(BIN.parent)
    run(
        python_command(
            "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)
        ),
        tmp_path,
        env,
        600,
    )
    (wheel,) = (tmp_path / "dist").glob("raypress-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    assert {f"raypress/theme/{n}" for n in theme_names()} <= packed, "the theme is in the wheel"
    assert {f"raypress/commands/starter/{p.name}" for p in STARTER.iterdir()} <= packed

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = isolated_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    run([*pip, "-c", str(REPO / "constraints.txt"), str(wheel)], tmp_path, env, 900)
    where = run(
        [str(venv / "bin" / "python"), "-c", "import raypress; print(raypress.__file__)"],
        tmp_path,
        env,
        60,
    )
    assert where.startswith(str(venv)), where

    work = tmp_path / "elsewhere"
    work.mkdir()
    run(["raypress", "new", "blog"], work, env, 60)
    blog = work / "blog"
    out = run(["raypress", "build"], blog, env, 600)
    assert "ran the snippets of 1 post(s)" in out, out
    (page,) = (blog / "_site").glob("*/*/*/welcome-to-raypress/index.html")
    html = page.read_text(encoding="utf-8")
    text = parse_page(html).text
    assert "the mean of 1,000,001 points is 0.500" in text
    assert "[0, 1, 4, 9, 16, 25, 36, 49]" in text
    assert '<span class="inline-result">49</span>' in html
    assert 'href="/assets/style.css"' in html and (blog / "_site/assets/style.css").is_file()
    assert len(list((blog / "snippets").glob("*.json"))) == 1
    assert actionlint(blog / WORKFLOW).returncode == 0
    run(["raypress", "theme", "eject", "post.html"], blog, env, 60)
    assert (blog / "templates" / "post.html").read_bytes() == (
        THEME_PATH / "post.html"
    ).read_bytes()
