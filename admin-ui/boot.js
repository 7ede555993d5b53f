// wasm-bindgen (--target web) output: the default export fetches ./admin_ui_bg.wasm,
// instantiates it and runs the app's #[wasm_bindgen(start)] function, which mounts it.
import init from "./admin_ui.js";

init().catch((err) => {
  console.error("admin UI failed to start", err);
  const note = document.createElement("p");
  note.style.padding = "1.5rem 1rem";
  note.textContent = "The admin UI failed to load; see the browser console.";
  document.body.append(note);
});
