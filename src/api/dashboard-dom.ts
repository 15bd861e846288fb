/**
 * The DOM helpers both dashboard scripts (dashboard.js, dashboard-commands.js) start with: `$` by id, and
 * `el`, which adds its children as elements or text nodes, never as HTML to parse.
 */
export const DOM_HELPERS = `  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const e = document.createElement(tag);
    Object.assign(e, props);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
    return e;
  };
`;
