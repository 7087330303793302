// CSS of the Playground view (theme variables with fallbacks; labels ≥ 13 px from the Jupyter font variables).
export const PLAYGROUND_CSS = `
.nbx-root.nbx-playground { --nbx-scale: 1; font-size: calc(max(13px, var(--jp-ui-font-size1, 13px)) * var(--nbx-scale));
  max-width: 100%; }
.nbx-playground select, .nbx-playground input, .nbx-playground button { font: inherit; }
.nbx-playground .nbx-control { color: var(--nbx-fg); flex-wrap: wrap; max-width: 100%; }
.nbx-playground :focus-visible { outline: 3px solid var(--nbx-accent); outline-offset: 2px; }
.nbx-playground .nbx-pg-settings { gap: 6px 14px; }
.nbx-playground .nbx-pg-features { display: inline-flex; flex-wrap: wrap; gap: 2px 8px; }
.nbx-playground .nbx-pg-features .nbx-control { gap: 2px; }
.nbx-playground .nbx-pg-status { font-family: var(--jp-code-font-family, monospace); color: var(--nbx-fg); }
.nbx-playground .nbx-pg-main { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.nbx-playground .nbx-pg-netbox { flex: 1 1 400px; min-width: 0; max-width: 100%; overflow-x: auto; }
.nbx-playground .nbx-pg-network { position: relative; }
.nbx-playground .nbx-pg-edges { position: absolute; left: 0; top: 0; }
.nbx-playground .nbx-pg-neuron { position: absolute; cursor: pointer; border: 1px solid var(--nbx-border);
  image-rendering: auto; }
.nbx-playground .nbx-pg-neuron:hover { border-color: var(--nbx-fg); }
.nbx-playground .nbx-pg-col-title { position: absolute; top: 0; transform: translateX(-50%); white-space: nowrap;
  color: var(--nbx-muted); }
.nbx-playground .nbx-pg-enlarge { display: none; align-items: center; gap: 10px; margin-top: 6px; flex-wrap: wrap; }
.nbx-playground .nbx-pg-enlarge.nbx-pg-open { display: flex; }
.nbx-playground .nbx-pg-big { image-rendering: auto; border: 1px solid var(--nbx-border); }
.nbx-playground .nbx-pg-big-title { flex: 1 1 12em; overflow-wrap: anywhere; }
.nbx-playground .nbx-pg-planebox { display: flex; flex-direction: column; gap: 6px; width: 300px; max-width: 100%; }
.nbx-playground .nbx-pg-plane { border: 1px solid var(--nbx-border); cursor: crosshair; }
.nbx-playground .nbx-pg-readout { overflow-wrap: anywhere; min-height: 4em; }
.nbx-playground .nbx-pg-charts { display: flex; flex-wrap: wrap; gap: 8px 16px; margin-top: 8px; }
.nbx-playground .nbx-pg-chart { max-width: 100%; overflow-x: auto; }
.nbx-playground .nbx-pg-chart-title { font-weight: 600; color: var(--nbx-fg); overflow-wrap: anywhere; }
.nbx-playground .nbx-pg-svg { display: block; overflow: visible; }
.nbx-playground .nbx-pg-svg text { fill: var(--nbx-fg); font-size: max(13px, var(--jp-ui-font-size1, 13px)); }
.nbx-playground .nbx-pg-frame { fill: none; stroke: var(--nbx-border); }
.nbx-playground .nbx-pg-axis { stroke: var(--nbx-fg); }
.nbx-playground .nbx-pg-cursor { stroke: var(--nbx-fg); stroke-dasharray: 2 2; }
.nbx-playground .nbx-pg-legend { display: flex; flex-wrap: wrap; gap: 2px 12px; max-width: 330px; }
.nbx-playground .nbx-pg-legend-item { display: inline-flex; align-items: center; gap: 4px; }
.nbx-playground .nbx-pg-swatch { display: inline-block; width: 18px; height: 0; }
.nbx-playground .nbx-pg-delta { margin-top: 8px; }
.nbx-playground .nbx-pg-delta-slider { width: 220px; max-width: 100%; }
.nbx-playground .nbx-pg-projected { border: 1px solid var(--nbx-border); }
.nbx-playground .nbx-pg-time { width: 320px; max-width: 100%; }
`;
