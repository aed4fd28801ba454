// Drawing live lists without losing what people are doing in them. Events arrive
// many times a second in a busy session; a list redrawn from scratch on each one
// would empty the answer a trainer is typing, close a question being edited and
// drop the keyboard focus. So each item of a live list has one view, made once
// and updated in place (`keyed`), nodes move only when the order changes, and
// the focused element gets its focus, caret and selection back if a move took
// them (`keepFocus`).

/// Remembers the focused element, its caret and selection; the function it
/// answers puts them back if something since moved the element (a move in the
/// DOM blurs it) and it is still on the page.
export function keepFocus() {
  const el = document.activeElement;
  if (!el || el === document.body) return () => {};
  let range = null;
  try {
    if (typeof el.selectionStart === 'number') range = [el.selectionStart, el.selectionEnd, el.selectionDirection];
  } catch { /* an input without a caret (checkbox, number) */ }
  return () => {
    if (!el.isConnected || document.activeElement === el) return;
    el.focus({ preventScroll: true });
    if (range) {
      try { el.setSelectionRange(...range); } catch { /* no caret */ }
    }
  };
}

/// Moves `node` before `ref` (null: to the end) keeping its state where the
/// browser can (Element.moveBefore keeps focus, selection and playing media).
function place(parent, node, ref) {
  if (typeof parent.moveBefore === 'function' && node.isConnected && parent.isConnected) {
    try { parent.moveBefore(node, ref); return; } catch { /* not movable this way: insert */ }
  }
  parent.insertBefore(node, ref);
}

const views = new WeakMap(); // parent -> Map(key -> view)

/**
 * Keeps the children of `parent` in step with `items`: one view per key
 * (`keyOf(item)`), made once by `make(item)` (an object with `el`, the node,
 * and `update(item)`), updated in place on every call, moved only when out of
 * order, removed when its item is gone. `parent` holds nothing else.
 */
export function keyed(parent, items, keyOf, make) {
  const back = keepFocus();
  const before = views.get(parent) || new Map();
  const now = new Map();
  for (const item of items) {
    const key = keyOf(item);
    if (now.has(key)) continue;
    const view = before.get(key) || make(item);
    view.update(item);
    now.set(key, view);
  }
  for (const [key, view] of before) if (!now.has(key)) view.el.remove();
  views.set(parent, now);
  let at = parent.firstChild;
  for (const view of now.values()) {
    if (at === view.el) at = at.nextSibling;
    else place(parent, view.el, at);
  }
  while (at) { const next = at.nextSibling; at.remove(); at = next; }
  back();
}

/// A view of something that never changes once drawn.
export const still = (el) => ({ el, update() {} });

/// Someone's text (a name, an option, a message) set among other words: a
/// `<bdi>`, so a right-to-left name cannot carry the words and numbers after it
/// into its own direction ("عائشة · 3 votes" would show the 3 before the name).
export function bdi(value) {
  const el = document.createElement('bdi');
  el.textContent = value;
  return el;
}

/// Sets `el`'s text only when it changes (a live region announces real changes only).
export function text(el, value) {
  if (el.textContent !== value) el.textContent = value;
  return el;
}
