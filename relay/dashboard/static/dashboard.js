// clickrelay dashboard: the pages work without this file. It shows times in the viewer's
// own time zone and draws the activity chart (uPlot) from the page's JSON data block.
"use strict";

function localTimes() {
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    const day = el.dataset.format === "day";
    el.textContent = day
      ? when.toLocaleDateString(undefined, { dateStyle: "medium" })
      : when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    el.title = when.toISOString();
  }
}

const COLOURS = {
  human: "#1f5fbf", unique: "#1c7c3a", opens: "#a0338a", security_scanner: "#b3261e",
  link_preview: "#8a5a00", generic_bot: "#6b4fa0", privacy_proxy: "#0f7c86",
};

function activityChart() {
  const holder = document.getElementById("activity-chart");
  const data = document.getElementById("activity-data");
  if (!holder || !data || typeof uPlot === "undefined") return;
  const chart = JSON.parse(data.textContent);
  const series = [{}];
  const values = [chart.x];
  for (const s of chart.series) {
    const machine = !["human", "unique", "opens"].includes(s.kind);
    const colour = COLOURS[s.kind] || "#555";
    series.push({ label: s.label, stroke: colour, width: machine ? 1 : 2,
                  fill: machine ? colour + "33" : undefined });
    values.push(s.values);
  }
  const width = () => Math.max(280, holder.clientWidth);
  const plot = new uPlot({ width: width(), height: 280, series,
                           axes: [{}, { label: "clicks and opens" }], scales: { y: { range: [0, null] } } },
                         values, holder);
  window.addEventListener("resize", () => plot.setSize({ width: width(), height: 280 }));
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes();
  activityChart();
});
