// Progress polling for job cards and live values of the range inputs. No build step, no libraries.
(function () {
  "use strict";
  function fmtEta(s) {
    if (s === undefined || s === null) return "";
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    return "ETA " + (m ? m + " min " : "") + r + " s";
  }
  function poll(card) {
    const id = card.dataset.job;
    fetch("/api/jobs/" + id, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((j) => {
        if (!j) return;
        const p = j.progress || {};
        card.querySelector(".job-status").textContent = j.status;
        card.querySelector(".job-step").textContent = p.step ? "(" + p.step + (p.n_steps ? " " + p.step_index + "/" + p.n_steps : "") + ")" : "";
        card.querySelector(".job-epoch").textContent = p.done ? p.unit + " " + p.done + "/" + p.total + (p.stage ? " " + p.stage : "") : "";
        card.querySelector(".job-loss").textContent = p.loss !== undefined ? "loss " + p.loss : "";
        card.querySelector(".job-eta").textContent = fmtEta(p.eta_s);
        card.querySelector(".job-log").textContent = j.log_tail || "";
        const err = card.querySelector(".job-error");
        if (j.error) { err.textContent = j.error; err.hidden = false; }
        const img = card.querySelector(".job-valimg");
        if (p.val_image) { img.src = "/jobs/" + id + "/files/" + p.val_image + "?t=" + Date.now(); img.hidden = false; }
        if (["done", "failed", "cancelled"].includes(j.status)) {
          if (card.dataset.status !== j.status) window.location.reload();
        } else {
          setTimeout(() => poll(card), 2000);
        }
      })
      .catch(() => setTimeout(() => poll(card), 5000));
  }
  document.querySelectorAll(".job[data-job]").forEach((card) => {
    if (!["done", "failed", "cancelled"].includes(card.dataset.status)) poll(card);
  });
  document.querySelectorAll("input[type=range]").forEach((input) => {
    const out = document.querySelector('output[for="' + input.id + '"]');
    const show = () => { if (out) out.textContent = input.value; };
    input.addEventListener("input", show);
    show();
  });
  const preset = document.getElementById("preset");
  if (preset) {
    preset.addEventListener("change", () => {
      JSON.parse(preset.dataset.presets).forEach((name) => {
        const el = document.getElementById("mix_" + name);
        el.value = name === preset.value ? 1 : 0;
        el.dispatchEvent(new Event("input"));
      });
    });
  }
})();
