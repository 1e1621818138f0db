"""Jekyll conformance: Jekyll's own test posts (tests/jekyll/, see its README) build with the
URLs, dates and front matter Jekyll gives them; plus the cases Jekyll users meet that its
test folder lacks (Unicode and Cyrillic names, a dated file without a slug, typography)."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest_publishing import SITE_TITLE, SITE_URL, Project, hrefs, parse_page, post_text

from raypress.config import Config
from raypress.publish.posts import Post, read_post
from raypress.publish.reading import available_layouts

JEKYLL = Path(__file__).resolve().parent / "jekyll"

# Jekyll's default permalink style, "date": /:categories/:year/:month/:day/:title:output_ext.
# Values Jekyll's tests assert are marked with the assertion; the others follow its rules.
DATE_STYLE_URLS = {
    # test_filters.rb:685
    "2008-02-02-published.markdown": "/publish_test/2008/02/02/published.html",
    "2008-10-18-foo-bar.markdown": "/2008/10/18/foo-bar.html",
    "2008-11-21-complex.markdown": "/2008/11/21/complex.html",
    "2008-12-03-permalinked-post.markdown": "/my_category/permalinked-post/",  # README: folder
    "2008-12-13-include.markdown": "/2008/12/13/include.html",
    "2009-01-27-array-categories.markdown": "/foo/bar/baz/2009/01/27/array-categories.html",
    "2009-01-27-categories.markdown": "/foo/bar/baz/2009/01/27/categories.html",
    "2009-01-27-category.markdown": "/foo/2009/01/27/category.html",
    "2009-01-27-empty-categories.markdown": "/2009/01/27/empty-categories.html",
    "2009-01-27-empty-category.markdown": "/2009/01/27/empty-category.html",
    "2009-01-27-no-category.markdown": "/2009/01/27/no-category.html",
    "2009-03-12-hash-#1.markdown": "/2009/03/12/hash-1.html",
    "2009-05-18-empty-tag.markdown": "/2009/05/18/empty-tag.html",
    "2009-05-18-empty-tags.markdown": "/2009/05/18/empty-tags.html",
    "2009-05-18-tag.markdown": "/2009/05/18/tag.html",
    "2009-05-18-tags.markdown": "/2009/05/18/tags.html",
    "2009-06-22-empty-yaml.markdown": "/2009/06/22/empty-yaml.html",
    "2009-06-22-no-yaml.markdown": "/2009/06/22/no-yaml.html",
    "2010-01-08-triple-dash.markdown": "/2010/01/08/triple-dash.html",
    "2010-01-09-date-override.markdown": "/2010/01/10/date-override.html",
    "2010-01-09-time-override.markdown": "/2010/01/10/time-override.html",
    "2010-01-09-timezone-override.markdown": "/2010/01/10/timezone-override.html",
    "2010-01-16-override-data.markdown": "/2010/01/10/override-data.html",
    "2011-04-12-md-extension.md": "/2011/04/12/md-extension.html",
    "2013-01-02-post-excerpt.markdown": "/2013/01/02/post-excerpt.html",
    "2013-01-12-nil-layout.markdown": "/2013/01/12/nil-layout.html",
    "2013-01-12-no-layout.markdown": "/2013/01/12/no-layout.html",
    "2013-04-11-custom-excerpt.markdown": "/2013/04/11/custom-excerpt.html",
    "2013-05-10-number-category.markdown": "/2013/2013/05/10/number-category.html",
    # test_excerpt.rb:101
    "2013-07-22-post-excerpt-with-layout.markdown": (
        "/bar/baz/z_category/mixedcase/2013/07/22/post-excerpt-with-layout.html"
    ),
    "2013-08-01-mkdn-extension.mkdn": "/2013/08/01/mkdn-extension.html",
    "2013-12-17-include-variable-filters.markdown": "/2013/12/17/include-variable-filters.html",
    "2014-03-03-yaml-with-dots.md": "/2014/03/03/yaml-with-dots.html",
    "2014-03-22-escape-+ %20[].markdown": "/2014/03/22/escape-+-20.html",
    "2014-07-05-another-mixed-case-category.markdown": (
        "/mixedcase/2014/07/05/another-mixed-case-category.html"
    ),
    "2014-07-05-mixed-case-category.markdown": "/mixedcase/2014/07/05/mixed-case-category.html",
    "2014-09-02-relative-includes.markdown": "/2014/09/02/relative-includes.html",
    "2015-01-08-post-excerpt-separator.markdown": "/2015/01/08/post-excerpt-separator.html",
    "2015-02-20-extensionless-permalink.markdown": "/extensionless-permalink/",  # README: folder
    "2015-12-27-extra-spaces.markdown": "/2015/12/27/extra-spaces.html",
    "2016-08-16-indented-link-references.markdown": "/2016/08/16/indented-link-references.html",
    "2016-11-26-special-chars-(+).markdown": "/2016/11/26/special-chars-(+).html",
    # test_generated_site.rb:66
    "2017-2-5-i-dont-like-zeroes.md": "/2017/02/05/i-dont-like-zeroes.html",
    "2018-01-28-closed-liquid-block-excerpt.markdown": (
        "/2018/01/28/closed-liquid-block-excerpt.html"
    ),
    "2018-01-28-open-liquid-block-excerpt.markdown": "/2018/01/28/open-liquid-block-excerpt.html",
    "2018-05-15-closed-liquid-block-excerpt-whitespace-control.md": (
        "/2018/05/15/closed-liquid-block-excerpt-whitespace-control.html"
    ),
    "2018-05-15-excerpt-whitespace-control-variable.md": (
        "/2018/05/15/excerpt-whitespace-control-variable.html"
    ),
    "2018-05-15-open-liquid-block-excerpt-whitespace-control.md": (
        "/2018/05/15/open-liquid-block-excerpt-whitespace-control.html"
    ),
    "2018-10-12-trailing-dots...markdown": "/2018/10/12/trailing-dots.html",  # test_document.rb:136
    "2018-11-15-excerpt-liquid-block.md": "/2018/11/15/excerpt-liquid-block.html",
    "es/2008-11-21-nested.markdown": "/2008/11/21/nested.html",
}
# with permalink = "pretty": test_tag_post_url.rb:24, :46, :76
PRETTY_STYLE_URLS = {
    "2008-11-21-complex.markdown": "/2008/11/21/complex/",
    "2016-11-26-special-chars-(+).markdown": "/2016/11/26/special-chars-(+)/",
    "es/2008-11-21-nested.markdown": "/2008/11/21/nested/",
}
UNPUBLISHED = "2008-02-02-not-published.markdown"  # test_generated_site.rb: "hide unpublished"


def jekyll_project(project: Project, permalink: str) -> Project:
    shutil.rmtree(project.root / "posts")
    shutil.copytree(JEKYLL / "_posts", project.root / "posts")
    project.configure(title=SITE_TITLE, url=SITE_URL, permalink=permalink, posts_per_page=100)
    return project


def output_file(url: str) -> str:
    path = url.lstrip("/")
    return path + "index.html" if url.endswith("/") else path


def test_every_jekyll_test_post_is_here() -> None:
    """The fixture holds all of Jekyll's Markdown test posts but those its README leaves out."""
    names = {p.relative_to(JEKYLL / "_posts").as_posix() for p in (JEKYLL / "_posts").rglob("*.*")}
    assert names == {*DATE_STYLE_URLS, UNPUBLISHED}


def test_jekyll_test_posts_build_with_jekylls_urls(project: Project) -> None:
    jekyll_project(project, "date")
    result = project.build()
    assert result.code == 0, str(result)
    files = set(project.files())
    missing = {name: url for name, url in DATE_STYLE_URLS.items() if output_file(url) not in files}
    assert not missing, missing
    assert not any("not-published" in f for f in files)
    index_links = set(hrefs(project.page("")))
    assert set(DATE_STYLE_URLS.values()) <= index_links  # the URLs the pages link to, as well


def test_pretty_permalinks_as_jekylls_post_url_tag_gives(project: Project) -> None:
    jekyll_project(project, "pretty")
    assert project.build().code == 0
    files = set(project.files())
    for url in PRETTY_STYLE_URLS.values():
        assert output_file(url) in files, url
    assert "/2016/11/26/special-chars-(+)/" in hrefs(project.page(""))


def test_published_false_is_a_draft(project: Project) -> None:
    jekyll_project(project, "date")
    assert project.build("--drafts").code == 0
    assert "publish_test/2008/02/02/not-published.html" in project.files()


def jekyll_post(name: str | Path) -> Post:
    config = Config(root=JEKYLL, permalink="date")
    return read_post(JEKYLL / "_posts" / name, config, available_layouts(config))


@pytest.mark.parametrize(
    ("name", "date", "categories", "tags"),
    [
        ("2017-2-5-i-dont-like-zeroes.md", "2017-02-05T00:00:00+00:00", (), ()),
        ("2010-01-09-date-override.markdown", "2010-01-10T00:00:00+00:00", (), ()),
        ("2010-01-09-time-override.markdown", "2010-01-10T13:07:09+00:00", (), ()),
        ("2010-01-09-timezone-override.markdown", "2010-01-10T13:07:09+00:00", (), ()),
        ("2010-01-16-override-data.markdown", "2010-01-10T13:07:09+00:00", (), ("A", "string")),
        ("2009-01-27-category.markdown", "2009-01-27T00:00:00+00:00", ("foo",), ()),
        ("2009-01-27-categories.markdown", "2009-01-27T00:00:00+00:00", ("foo", "bar", "baz"), ()),
        ("2009-01-27-empty-category.markdown", "2009-01-27T00:00:00+00:00", (), ()),
        ("2013-05-10-number-category.markdown", "2013-05-10T00:00:00+00:00", ("2013",), ()),
        (
            "2014-07-05-mixed-case-category.markdown",
            "2014-07-05T00:00:00+00:00",
            ("MixedCase",),
            (),
        ),
        ("2009-05-18-tag.markdown", "2009-05-18T00:00:00+00:00", (), ("code",)),
        ("2009-05-18-empty-tag.markdown", "2009-05-18T00:00:00+00:00", (), ()),
        ("2009-05-18-tags.markdown", "2009-05-18T00:00:00+00:00", (), ("food", "cooking", "pizza")),
        (  # test_excerpt.rb:103-105
            "2013-07-22-post-excerpt-with-layout.markdown",
            "2013-07-22T00:00:00+00:00",
            ("bar", "baz", "z_category", "MixedCase"),
            ("first", "second", "third", "jekyllrb.com"),
        ),
    ],
)
def test_dates_tags_and_categories_as_jekyll_reads_them(
    name: str, date: str, categories: tuple[str, ...], tags: tuple[str, ...]
) -> None:
    post = jekyll_post(name)
    assert post.date.isoformat() == date
    assert post.categories == categories
    assert post.tags == tags


def test_the_sites_categories_are_jekylls(project: Project) -> None:
    """test_site.rb:325 lists Jekyll's categories; "category" and "win" come from posts
    outside _posts/ (category/_posts, win/_posts), not in this set."""
    names = [p for p in (JEKYLL / "_posts").rglob("*.*") if "not-published" not in p.name]
    found = {
        c for path in names for c in jekyll_post(path.relative_to(JEKYLL / "_posts")).categories
    }
    assert found == {
        "2013",
        "bar",
        "baz",
        "foo",
        "z_category",
        "MixedCase",
        "Mixedcase",
        "publish_test",
    }


def test_excerpt_key_is_the_excerpt(project: Project) -> None:
    jekyll_project(project, "date")
    assert project.build().code == 0
    index = parse_page(project.page("")).text
    assert "I can set a custom excerpt" in index
    assert "This is not my excerpt" not in index
    assert "This is not my excerpt" in project.page("2013/04/11/custom-excerpt.html")
    assert "First paragraph with link ref" in index  # post-excerpt: its first paragraph
    assert "Second paragraph" not in index


def test_unknown_layout_is_a_warning_and_the_post_uses_post(project: Project) -> None:
    jekyll_project(project, "date")
    result = project.build()
    assert result.code == 0, str(result)
    warnings = result.err_lines
    expected = (
        "warning: posts/2008-10-18-foo-bar.markdown:2: unknown layout 'default'; using 'post'"
    )
    assert any(line.startswith(expected) for line in warnings), result.err
    assert any("2013-01-12-nil-layout.markdown:2: unknown layout 'nil'" in w for w in warnings)
    assert all(line.startswith("warning: ") for line in warnings), result.err
    assert 'class="post"' in project.page("2008/10/18/foo-bar.html")


def test_percent_encoded_traversal_is_refused_with_file_and_line(project: Project) -> None:
    project.post("good.md", post_text("Fine.\n", title="Good", date="2024-01-01"))
    project.build_ok()
    before = project.tree()
    shutil.copy(JEKYLL / "refused" / "2014-01-06-permalink-traversal.md", project.root / "posts")
    result = project.build()
    assert result.code == 1
    assert result.problem_lines == [
        "posts/2014-01-06-permalink-traversal.md:2: error: permalink gives the URL "
        "'/%2e%2e/%2e%2e/%2e%2e/baddie.html' (decoded: '/../../../baddie.html'), which contains "
        "'.' or '..' segments and would leave the output folder (use a relative path inside the "
        "site such as /notes/my-post/)"
    ]
    assert project.tree() == before
    assert not (project.root / "baddie.html").exists()


# -- what Jekyll users meet beyond Jekyll's test folder --------------------------------------


def test_unicode_and_cyrillic_names_keep_their_letters(project: Project) -> None:
    project.post("2024-05-01-größe-übermaß.md", post_text("Groß.\n", title="Größe", tags="[Größe]"))
    project.post("2024-05-02-привет-мир.md", post_text("Мир.\n", title="Привет"))
    decomposed = unicodedata.normalize("NFD", "2024-05-03-café.md")  # as macOS names it
    project.post(decomposed, post_text("Café.\n", title="Café"))
    project.build_ok()
    files = set(project.files())
    assert {
        "2024/05/01/größe-übermaß/index.html",
        "2024/05/02/привет-мир/index.html",
        "2024/05/03/café/index.html",
        "tags/größe/index.html",
    } <= files
    links = set(hrefs(project.page("")))
    assert {"/2024/05/01/größe-übermaß/", "/2024/05/02/привет-мир/"} <= links


def test_percent_encoded_permalinks_are_decoded(project: Project) -> None:
    project.post("a.md", post_text("A.\n", title="A", date="2024-01-01", permalink="/caf%C3%A9/"))
    project.post(
        "b.md", post_text("B.\n", title="B", date="2024-01-02", permalink="/my%20notes/b/")
    )
    project.post("c.md", post_text("C.\n", title="C", date="2024-01-03", permalink="notes/c/"))
    project.build_ok()
    files = set(project.files())
    assert {"café/index.html", "my notes/b/index.html", "notes/c/index.html"} <= files
    assert {"/café/", "/my%20notes/b/", "/notes/c/"} <= set(hrefs(project.page("")))


def test_a_dated_file_without_a_slug_gets_a_clear_message(project: Project) -> None:
    project.post("2019-05-05.md", post_text("Day.\n", title="A day"))
    result = project.build()
    assert result.code == 1
    assert result.problem_lines == [
        "posts/2019-05-05.md:1: error: the file name has a date but no slug (name it "
        "2019-05-05-some-title.md, or add 'slug:' to the front matter)"
    ]
    project.post("2019-05-05.md", post_text("Day.\n", title="A day", slug="a-day"))
    project.build_ok()
    assert "2019/05/05/a-day/index.html" in project.files()


def test_an_impossible_date_in_the_file_name_is_named(project: Project) -> None:
    project.post("2024-2-30-leap.md", post_text("No.\n", title="No"))
    result = project.build()
    assert result.code == 1
    assert result.problem_lines[0].startswith(
        "posts/2024-2-30-leap.md:1: error: the file name's date 2024-2-30 is not a date"
    )


# -- typography, as kramdown gives Jekyll users -----------------------------------------------

PROSE = (
    "Dashes --- em, -- en, dots... and \"double\" 'single' it's.\n\n"
    'Code `a -- b "c"` and <code>x --- "y"</code> stay.\n\n'
    '```text\nfence -- "kept" ...\n```\n'
)


def test_typography_is_kramdowns_and_leaves_code_alone(project: Project) -> None:
    project.post("2024-01-01-t.md", post_text(PROSE, title="T"))
    project.build_ok()
    page = project.page("2024/01/01/t/")
    assert "Dashes — em, – en, dots… and “double” ‘single’ it’s." in page
    assert "<code>a -- b &quot;c&quot;</code>" in page
    assert '<code>x --- "y"</code>' in page
    assert 'fence -- "kept" ...' in parse_page(page).text


def test_typography_can_be_switched_off(project: Project) -> None:
    project.configure(title=SITE_TITLE, url=SITE_URL, typography=False)
    project.post("2024-01-01-t.md", post_text(PROSE, title="T"))
    project.build_ok()
    text = parse_page(project.page("2024/01/01/t/")).text
    assert "Dashes --- em, -- en, dots... and \"double\" 'single' it's." in text


def test_the_seed_post_shows_em_dashes(project: Project) -> None:
    project.add_example_posts()
    project.build_ok()
    text = parse_page(project.page("2025/10/27/using-the-ray-library/")).text
    assert "As my first post — and as a reminder to myself — here’s a quick set" in text
    assert " --- " not in text
