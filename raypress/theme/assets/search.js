// The search page: queries the Pagefind index (/pagefind/, written by the build) in the
// browser. Loaded only on /search/; without JavaScript the page says where posts are listed.
const form = document.querySelector("form.search-form");
const input = form.querySelector("input[name=q]");
const status = document.querySelector(".search-status");
const list = document.querySelector("ol.search-results");
const shown = 10;

let pagefind = null;
try {
  const bundle = form.dataset.bundle;
  pagefind = await import(bundle + "pagefind.js");
  await pagefind.options({ baseUrl: form.dataset.baseurl });
  // A large site's index comes in shards (bundles of a few hundred posts each): the build
  // lists all but the first in shards.json, and Pagefind searches them as one.
  const listed = await fetch(bundle + "shards.json")
    .then((r) => (r.ok ? r.json() : []))
    .catch(() => []);
  for (const shard of listed) {
    await pagefind.mergeIndex(bundle + shard, { baseUrl: form.dataset.baseurl });
  }
  pagefind.init();
} catch {
  pagefind = null;
  status.textContent = "There is nothing to search yet: this site has no search index.";
}

function item(data) {
  const entry = document.createElement("li");
  const link = document.createElement("a");
  link.href = data.url;
  link.textContent = data.meta.title || data.url;
  const heading = document.createElement("h2");
  heading.className = "search-result-title";
  heading.append(link);
  const excerpt = document.createElement("p");
  excerpt.className = "search-result-excerpt";
  excerpt.innerHTML = data.excerpt; // Pagefind's excerpt: escaped text with <mark> around hits
  entry.append(heading, excerpt);
  return entry;
}

let latest = 0;
async function search(query) {
  const ticket = ++latest;
  const url = new URL(window.location.href);
  if (query) url.searchParams.set("q", query);
  else url.searchParams.delete("q");
  window.history.replaceState(null, "", url);
  if (!pagefind) return;
  if (!query.trim()) {
    list.replaceChildren();
    status.textContent = "";
    return;
  }
  const found = await pagefind.search(query);
  const data = await Promise.all(found.results.slice(0, shown).map((r) => r.data()));
  if (ticket !== latest) return; // a newer query has started
  list.replaceChildren(...data.map(item));
  const count = found.results.length;
  const plural = count === 1 ? "post" : "posts";
  const more = count > shown ? ` (the first ${shown} shown)` : "";
  status.textContent = count
    ? `${count} ${plural} found for “${query}”${more}`
    : `No post found for “${query}”`;
}

let timer = 0;
input.addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(() => search(input.value), 150);
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  search(input.value);
});
const initial = new URL(window.location.href).searchParams.get("q") || "";
input.value = initial;
if (initial) search(initial);
