import { defineConfig } from "vite";

// One page per window; Tauri loads them from dist/ (src-tauri/tauri.conf.json).
export default defineConfig({
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    target: "es2021",
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      input: {
        library: "library.html",
        settings: "settings.html",
        push: "push.html",
      },
    },
  },
});
