"""Publishing: posts and their front matter, Markdown and highlighting, the snippets a
post holds, outputs embedded in the HTML, template views and rendering, the post's
Jupytext script, the parse cache and the atomic site writer."""
