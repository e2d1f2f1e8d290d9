/**
 * The certificate checks (lib/doctor/certificates.ts) on files made by openssl in a temporary
 * folder: an expired certificate, a certificate with another's key, one signed by another CA,
 * and a good set.
 */
import { assertEquals } from "../helpers/assert.ts";
import { checkCertificates } from "../../lib/doctor/certificates.ts";

function openssl(dir: string, args: string[]): void {
  const out = new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .outputSync();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A CA, a leaf it signed (valid from..to, openssl ca dates), and the leaf's key. */
function makeCerts(dir: string, name: string, start: string, end: string): void {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "365",
    "-subj",
    `/CN=${name} CA`,
    "-keyout",
    `${name}-ca.key`,
    "-out",
    `${name}-ca.pem`,
  ]);
  openssl(dir, [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
  ]);
  Deno.writeTextFileSync(
    `${dir}/${name}.cnf`,
    [
      "[ca]",
      "default_ca=x",
      "[x]",
      `database=${name}.index`,
      "new_certs_dir=.",
      `serial=${name}.serial`,
      "default_md=sha256",
      "policy=p",
      "[p]",
      "commonName=supplied",
      "",
    ].join("\n"),
  );
  Deno.writeTextFileSync(`${dir}/${name}.index`, "");
  Deno.writeTextFileSync(`${dir}/${name}.serial`, "01\n");
  openssl(dir, [
    "ca",
    "-batch",
    "-config",
    `${name}.cnf`,
    "-cert",
    `${name}-ca.pem`,
    "-keyfile",
    `${name}-ca.key`,
    "-in",
    `${name}.csr`,
    "-out",
    `${name}.pem`,
    "-startdate",
    start,
    "-enddate",
    end,
    "-notext",
  ]);
}

const dir = Deno.makeTempDirSync({ prefix: "doctor-certs-" });
// After the CAs made now (valid for 365 days), before "soon" expires.
const NOW = Date.UTC(2027, 0, 15);
makeCerts(dir, "good", "20260101000000Z", "20280101000000Z");
makeCerts(dir, "expired", "20200101000000Z", "20200201000000Z");
makeCerts(dir, "soon", "20260101000000Z", "20270201000000Z");
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const verdicts = (paths: Parameters<typeof checkCertificates>[0]) =>
  checkCertificates(paths, { nowMs: NOW }).map((r) => [r.check, r.verdict]);

Deno.test("certificate check passes a CA, certificate and key that belong together", () => {
  assertEquals(
    verdicts({ ca: `${dir}/good-ca.pem`, cert: `${dir}/good.pem`, key: `${dir}/good.key` }),
    [
      ["KAFKA_SSL_CA", "ok"],
      ["KAFKA_SSL_CERT", "ok"],
      ["KAFKA_SSL_KEY", "ok"],
      ["certificate and key", "ok"],
      ["certificate issuer", "ok"],
    ],
  );
});

Deno.test("certificate check fails an expired certificate and says when it expired", () => {
  const results = checkCertificates({
    ca: `${dir}/expired-ca.pem`,
    cert: `${dir}/expired.pem`,
    key: `${dir}/expired.key`,
  }, { nowMs: NOW });
  const cert = results.find((r) => r.check === "KAFKA_SSL_CERT")!;
  assertEquals([cert.verdict, cert.message], [
    "fail",
    `"${dir}/expired.pem" expired on 2020-02-01`,
  ]);
});

Deno.test("certificate check warns under 30 days before expiry", () => {
  const cert = checkCertificates({ cert: `${dir}/soon.pem` }, { nowMs: NOW })[0]!;
  assertEquals([cert.verdict, cert.message], [
    "warning",
    `"${dir}/soon.pem" expires in 17 days (2027-02-01)`,
  ]);
});

Deno.test("certificate check fails a certificate with another certificate's key", () => {
  assertEquals(verdicts({ cert: `${dir}/good.pem`, key: `${dir}/expired.key` }).at(-1), [
    "certificate and key",
    "fail",
  ]);
});

Deno.test("certificate check warns about a certificate another CA signed", () => {
  assertEquals(verdicts({ ca: `${dir}/expired-ca.pem`, cert: `${dir}/good.pem` }).at(-1), [
    "certificate issuer",
    "warning",
  ]);
});

Deno.test("certificate check fails unreadable and unparsable files without printing them", () => {
  Deno.writeTextFileSync(`${dir}/garbage.key`, "-----BEGIN PRIVATE KEY-----\nsecret\n");
  const results = checkCertificates({ ca: `${dir}/missing.pem`, key: `${dir}/garbage.key` });
  assertEquals(results.map((r) => [r.check, r.verdict, r.message]), [
    ["KAFKA_SSL_CA", "fail", `Cannot read "${dir}/missing.pem": file not found`],
    ["KAFKA_SSL_KEY", "fail", `"${dir}/garbage.key" is not an unencrypted PEM private key`],
  ]);
});
