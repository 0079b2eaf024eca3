// One identity value (a JWT `sub`) as the gateway maps it to a reply-topic
// level (docs/protocol.md, "Reply topics"): the value itself when it is a
// safe level, else percent-encoded with upper-case hex, or hashed when long.
export async function replyLevel(value) {
  const bytes = new TextEncoder().encode(value);
  // `/ + # %`, white space (Unicode White_Space), C0 and C1 controls, DEL,
  // and the non-characters U+FDD0–U+FDEF (the others are checked below).
  const unsafe = /[\/+#%\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f\ufdd0-\ufdef]/u;
  const nonCharacter = [...value].some((c) => (c.codePointAt(0) & 0xfffe) === 0xfffe);
  if (bytes.length >= 1 && bytes.length <= 256 && !/^[$~]/.test(value)
      && !unsafe.test(value) && !nonCharacter) return value;
  let encoded = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    encoded += /[A-Za-z0-9._-]/.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  if (encoded === "") return "~";
  if (encoded.length <= 64) return encoded;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return "~" + [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}
