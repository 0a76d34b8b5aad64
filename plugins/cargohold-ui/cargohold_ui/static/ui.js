// cargohold catalog: filter-as-you-type, copy buttons, sorting a table's page.
// Served by the registry itself; no inline script (Content-Security-Policy).
"use strict";

function filterAsYouType() {
  const input = document.getElementById("search");
  const rows = document.getElementById("repository-rows");
  if (!input || !rows) return;
  let timer = null;
  let seq = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++seq;
      const url = new URL(input.dataset.fragment, window.location.href);
      if (input.value.trim()) url.searchParams.set("q", input.value.trim());
      const resp = await fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}});
      if (!resp.ok || mine !== seq) return;
      rows.innerHTML = await resp.text();
      const page = new URL(window.location.href);
      if (input.value.trim()) page.searchParams.set("q", input.value.trim());
      else page.searchParams.delete("q");
      page.searchParams.delete("last");
      history.replaceState(null, "", page);
    }, 150);
  });
}

function copyButtons() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      let done = false;
      try {
        await navigator.clipboard.writeText(text);
        done = true;
      } catch (e) {
        // Plain-HTTP pages have no clipboard API: select the text and copy.
        const area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        try { done = document.execCommand("copy"); } catch (e2) { done = false; }
        area.remove();
      }
      button.dataset.copied = text;
      button.textContent = done ? "Copied" : "Select and copy";
      button.classList.add("copied");
      setTimeout(() => { button.textContent = "Copy"; button.classList.remove("copied"); }, 2000);
    });
  }
}

function sortableTables() {
  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach((th, column) => {
      if (!th.dataset.sort) return;
      th.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const key = (row) => {
          const cell = row.cells[column];
          if (!cell) return "";
          const value = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
          return th.dataset.sort === "number" ? parseFloat(value) : value;
        };
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = th.dataset.sort === "number" ? x - y : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
        rows.forEach((row) => body.appendChild(row));
      });
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  filterAsYouType();
  copyButtons();
  sortableTables();
});
