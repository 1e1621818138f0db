// Mermaid diagrams, drawn in the browser from the ```mermaid fences of the page. Loaded
// only on pages that have one; without it the diagram's source stays readable as text.
// The vendored Mermaid (assets/mermaid/, see its VERSION file) loads the code of each kind
// of diagram on demand. Diagrams follow the reader's light or dark scheme, also when it
// changes while the page is open, and are drawn again when `serve` swaps in an edited body.
let nodes = [];
function collect() {
  nodes = [...document.querySelectorAll("pre.mermaid")];
  for (const node of nodes) node.dataset.source ??= node.textContent;
}
collect();

const { default: mermaid } = await import("./mermaid/mermaid.esm.min.mjs");
const dark = window.matchMedia("(prefers-color-scheme: dark)");

async function draw() {
  mermaid.initialize({
    startOnLoad: false,
    securityLevel: "strict",
    theme: dark.matches ? "dark" : "default",
  });
  for (const node of nodes) {
    node.removeAttribute("data-processed");
    node.textContent = node.dataset.source;
  }
  await mermaid.run({ nodes, suppressErrors: true });
  document.documentElement.dataset.diagrams = dark.matches ? "dark" : "light";
}

await draw();
dark.addEventListener("change", draw);
document.addEventListener("raypress:updated", () => {
  collect();
  draw();
});
