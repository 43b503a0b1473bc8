// The linter (make lint): TypeScript with type information, so promises nobody awaits (in code and in
// tests' expect(...).rejects) are found; the .mjs and .cjs scripts without it. Formatting is Prettier's.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

const nodeGlobals = Object.fromEntries(
  [
    "process",
    "console",
    "Buffer",
    "URL",
    "setTimeout",
    "clearTimeout",
    "setInterval",
    "clearInterval",
    "setImmediate",
    "structuredClone",
    "performance",
  ].map((name) => [name, "readonly"]),
);

export default tseslint.config(
  {
    ignores: [
      "bin/",
      "gen/",
      "dist/",
      "build/",
      "coverage/",
      "reports/",
      ".node/",
      ".bun/",
      ".stryker-tmp/",
      "conformance/.work/",
      "conformance/reference/",
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: nodeGlobals,
      parserOptions: { projectService: { allowDefaultProject: ["vitest.mutation.config.ts"] }, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none", ignoreRestSiblings: true },
      ],
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-explicit-any": "error",
      // An async function without await is how a synchronous step implements an async interface.
      "@typescript-eslint/require-await": "off",
      // `ErrorCode | number` and `Promise<unknown> | unknown` say what is expected, and cost nothing.
      "@typescript-eslint/no-redundant-type-constituents": "off",
    },
  },
  {
    // Tests read a plugin's JSON output as it comes and assert on it: `any` there is the point.
    files: ["**/*.test.ts", "test/**", "vitest*.config.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
  {
    // Bundled as CommonJS; each builtin or addon is required where it is first needed (start-up latency).
    files: ["scripts/loader.ts", "test/fixtures/load-addons.ts"],
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
  {
    files: ["**/*.mjs", "**/*.cjs"],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ["**/*.cjs"],
    languageOptions: { sourceType: "commonjs", globals: { require: "readonly", module: "writable", __dirname: "readonly", __filename: "readonly" } },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
);
