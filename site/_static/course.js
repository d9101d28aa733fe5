/* The course site: a keyboard reaches every block that scrolls.
 *
 * A code block or an output wider than the page scrolls sideways; without a tab stop, a reader who
 * cannot use a mouse cannot scroll it (axe-core's rule scrollable-region-focusable). Only the blocks
 * that scroll at the reader's window width get one, so Tab does not stop at every short block: a
 * ResizeObserver checks each block again whenever its size changes (a resized window, an opened
 * <details>). In a focused block the left and right arrow keys scroll it: they do not reach Sphinx's
 * page-wide shortcut (navigation_with_keys), which would leave for the previous or next page.
 */
(() => {
  "use strict";
  const SCROLLING = "article pre, article .table-wrapper, article .math-wrapper";

  const scrolls = (block) => block.scrollWidth > block.clientWidth || block.scrollHeight > block.clientHeight;

  const update = (block) => {
    if (scrolls(block)) {
      block.setAttribute("tabindex", "0");
    } else {
      block.removeAttribute("tabindex");
    }
  };

  const keepArrows = (event) => {
    if (event.currentTarget.hasAttribute("tabindex") && (event.key === "ArrowLeft" || event.key === "ArrowRight")) {
      event.stopPropagation(); // the browser still scrolls the block: only the page's shortcut misses the key
    }
  };

  const start = () => {
    const blocks = document.querySelectorAll(SCROLLING);
    blocks.forEach(update);
    blocks.forEach((block) => block.addEventListener("keydown", keepArrows));
    if ("ResizeObserver" in window) {
      const observer = new ResizeObserver((entries) => entries.forEach((entry) => update(entry.target)));
      blocks.forEach((block) => observer.observe(block));
    }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
