export function buildDebs() { return []; }
