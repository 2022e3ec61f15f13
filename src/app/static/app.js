// Progress polling for job cards and live values of the range inputs. No build step, no libraries.
(function () {
  "use strict";
  function fmtEta(s) {
    if (s === undefined || s === null) return "";
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    return "ETA " + (m ? m + " min " : "") + r + " s";
  }
  // tell the person when a job they are watching ends (if they allowed notifications)
  function notify(j) {
    const what = { preprocess: "Preprocessing", train: "Your avatar", reenact: "The render", cross: "The reenactment" }[j.kind] || "The job";
    const text = what + (j.status === "done" ? " is ready" : " " + j.status);
    try { sessionStorage.setItem("avatar-notice", text); } catch (e) { /* private mode */ }
    if (window.Notification && Notification.permission === "granted") new Notification("Avatar studio", { body: text });
  }
  try {
    const notice = sessionStorage.getItem("avatar-notice");
    if (notice) { document.title = notice + " - " + document.title; sessionStorage.removeItem("avatar-notice"); }
  } catch (e) { /* private mode */ }
  document.querySelectorAll("form#avatar-form, form.ask-notify").forEach((f) =>
    f.addEventListener("submit", () => {
      if (window.Notification && Notification.permission === "default") Notification.requestPermission();
    }));
  function poll(card) {
    const id = card.dataset.job;
    fetch("/api/jobs/" + id, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((j) => {
        if (!j) return;
        const p = j.progress || {};
        card.querySelector(".job-status").textContent = j.status;
        const over = ["done", "failed", "cancelled"].includes(j.status);
        card.querySelector(".job-step").textContent = p.step && !over ? "(" + p.step + (p.n_steps ? " " + p.step_index + "/" + p.n_steps : "") + ")" : "";
        card.querySelector(".job-epoch").textContent = p.done ? p.unit + " " + p.done + "/" + p.total + (p.stage ? " " + p.stage : "") : "";
        card.querySelector(".job-loss").textContent = p.loss !== undefined ? "loss " + p.loss : "";
        card.querySelector(".job-eta").textContent = fmtEta(p.eta_s);
        card.querySelector(".job-log").textContent = j.log_tail || "";
        const err = card.querySelector(".job-error");
        if (j.error) { err.textContent = j.error; err.hidden = false; }
        const img = card.querySelector(".job-valimg");
        if (p.val_image) { img.src = "/jobs/" + id + "/files/" + p.val_image + "?t=" + Date.now(); img.hidden = false; }
        if (["done", "failed", "cancelled"].includes(j.status)) {
          if (card.dataset.status !== j.status) {
            notify(j);
            window.location.reload();
          }
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
  // the dashboard: job states in the tables follow the queue
  const live = document.querySelectorAll("[data-live-job]");
  function refresh() {
    let pending = 0;
    live.forEach((cell) => {
      if (["done", "failed", "cancelled"].includes(cell.textContent.trim())) return;
      pending += 1;
      fetch("/api/jobs/" + cell.dataset.liveJob, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((j) => { if (j) cell.textContent = j.status; })
        .catch(() => {});
    });
    if (pending) setTimeout(refresh, 3000);
  }
  if (live.length) setTimeout(refresh, 3000);
  // step 1: upload with a progress bar (a plain form post without JavaScript)
  const form = document.getElementById("upload-form");
  if (form && window.XMLHttpRequest && window.FormData) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const bar = document.getElementById("upload-progress");
      const prog = bar.querySelector("progress"), label = bar.querySelector("span");
      bar.hidden = false;
      form.querySelectorAll("[type=submit]").forEach((b) => { b.disabled = true; });
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        const pct = Math.round((100 * e.loaded) / e.total);
        prog.value = pct;
        label.textContent = pct < 100 ? pct + "% uploaded" : "uploaded; checking the video...";
      });
      xhr.addEventListener("load", () => {
        if (xhr.responseURL && xhr.responseURL !== (form.action || window.location.href)) {
          window.location.href = xhr.responseURL;
        } else {
          document.open(); document.write(xhr.responseText); document.close();
        }
      });
      xhr.addEventListener("error", () => {
        label.textContent = "the upload failed (connection lost); try again";
        form.querySelectorAll("[type=submit]").forEach((b) => { b.disabled = false; });
      });
      xhr.send(new FormData(form));
    });
  }
  // step 2: the 3D viewer's view presets and turntable
  const viewer = document.getElementById("viewer");
  if (viewer) {
    document.querySelectorAll("[data-orbit]").forEach((b) =>
      b.addEventListener("click", () => { viewer.cameraOrbit = b.dataset.orbit; }));
    const tt = document.getElementById("turntable");
    tt.addEventListener("click", () => {
      viewer.autoRotate = !viewer.autoRotate;
      tt.setAttribute("aria-pressed", String(viewer.autoRotate));
    });
  }
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
