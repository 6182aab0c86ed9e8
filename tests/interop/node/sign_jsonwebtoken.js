const crypto = require('crypto');
const fs = require('fs');
const jwt = require('jsonwebtoken'); // npm install jsonwebtoken

const [appId, keyFile, api] = process.argv.slice(2);
const privateKey = crypto.createPrivateKey(fs.readFileSync(keyFile));
// RFC 7638 thumbprint: these members, this order, no spaces.
const { e, n } = crypto.createPublicKey(privateKey).export({ format: 'jwk' });
const kid = crypto.createHash('sha256').update(JSON.stringify({ e, kty: 'RSA', n })).digest('base64url');
const now = Math.floor(Date.now() / 1000);
const token = jwt.sign(
  { appId, iat: now - 10, jti: crypto.randomBytes(16).toString('base64url') },
  privateKey,
  { algorithm: 'RS512', expiresIn: 310, keyid: kid }, // exp = iat + 310 = now + 300
);
fetch(`${api}/whoami`, { headers: { 'x-token': token } }).then(async (resp) => {
  const who = await resp.json();
  console.log(resp.status, who.appId, who.kid);
});
