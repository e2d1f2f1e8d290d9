import { equal, throws } from "./helpers/assert.ts";
import { DecimalError, normalize, plain, subtract } from "../lib/decimal.ts";

Deno.test("decimal subtraction is exact where floating point is not", () => {
  equal(subtract("29603.83", "29603.82"), "0.01");
  equal(29603.83 - 29603.82 === 0.01, false);
  equal(subtract("1.3e-7", "1.2e-7"), "1e-8");
  equal(subtract("0.3", "0.1"), "0.2");
});

Deno.test("decimal subtraction handles signs, zero and unequal scales", () => {
  equal(subtract("10.25", "10.5"), "-0.25");
  equal(subtract("7", "7.000"), "0");
  equal(subtract("100", "0.000001"), "99.999999");
  equal(subtract("0", "5"), "-5");
  equal(subtract("5", "0"), "5");
});

Deno.test("decimal subtraction keeps every digit of long numbers", () => {
  equal(subtract("0.12345678901234567892", "0.12345678901234567891"), "1e-20");
  equal(subtract("123456789012345678901", "1"), "123456789012345678900");
  equal(subtract("1e21", "0"), "1e+21");
  equal(subtract("1e20", "1"), "99999999999999999999");
});

Deno.test("decimal results are formatted the way JavaScript formats numbers", () => {
  const cases: [string, string][] = [["0.000007", "0"], ["1.5e-7", "0"], ["123.456", "0.006"], [
    "1e20",
    "0",
  ]];
  for (const [a, b] of cases) {
    equal(subtract(a, b), String(Number(a) - Number(b)), `${a} - ${b}`);
  }
  equal(normalize("7e-06"), "0.000007");
  equal(normalize("1.30E-7"), "1.3e-7");
});

Deno.test("decimal parsing rejects text that is not a number", () => {
  throws(() => subtract("abc", "1"), DecimalError);
  throws(() => subtract("1", "."), /Cannot parse decimal "\."/);
});

Deno.test("plain writes small and large numbers without an exponent, value unchanged", () => {
  equal(plain("1e-7"), "0.0000001");
  equal(plain("1.3e-7"), "0.00000013");
  equal(plain("-2.5E-10"), "-0.00000000025");
  equal(plain("1.5e+22"), "15000000000000000000000");
  equal(plain("0.010"), "0.010");
  equal(plain("1E-9"), "0.000000001");
  equal(plain("29603.83"), "29603.83");
  equal(plain("-0"), "-0");
  equal(plain("0e5"), "0");
  equal(plain("100"), "100");
  equal(Number(plain("1.2345e-12")), 1.2345e-12);
});
