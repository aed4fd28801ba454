// A live session's the deck on screen and page flips (in progress). A panel of the session page
// (session.js): `section` is its card; `render(snap)` draws it from the
// snapshot; `apply(m, snap)` takes one event of the session's channels and
// answers the part of the snapshot it replaces (an object merged into it), or
// null when the event is not one of its own.

export function slidesPanel(ctx) {
  const { h } = ctx;
  const body = h('div', { class: 'slides' });
  const section = h('section', { 'aria-labelledby': 'slides-title', class: 'card slides-card' },
    h('h2', { id: 'slides-title', text: 'Slides' }), body);
  return {
    section,
    render(snap) { void snap; },
    apply(m, snap) { void m; void snap; return null; },
  };
}
