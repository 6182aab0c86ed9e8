// An application with no JWT code: Node's built-in fetch through the agent.
const resp = await fetch(`${process.argv[2]}/whoami`);
console.log(resp.status, (await resp.json()).appId);
