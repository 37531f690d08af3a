// A downstream consumer of OpenLFR alerts (plain JSON CloudEvents, Kafka binary content mode),
// written as a force's integrator would: kafkajs, no OpenLFR code.
// Usage: node consumer.js <bootstrap> <topic> <group id> <count>
// Prints one JSON line per event: {key, ce_id, ce_type, content_type, data}; exits after <count>.
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, groupId, count] = process.argv.slice(2);
  const wanted = Number(count || 1);
  const kafka = new Kafka({ clientId: "node-consumer", brokers: bootstrap.split(","), logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId });
  const seen = new Set(); // at-least-once delivery: de-duplicate on ce_id
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  await consumer.run({
    eachMessage: async ({ message }) => {
      const header = (name) => (message.headers[name] === undefined ? undefined : message.headers[name].toString());
      const id = header("ce_id");
      if (seen.has(id)) return;
      seen.add(id);
      const data = JSON.parse(message.value.toString("utf8")); // the value is the alert itself
      console.log(JSON.stringify({ key: message.key.toString(), ce_id: id, ce_type: header("ce_type"),
                                   content_type: header("content-type"), data }));
      if (seen.size >= wanted) done();
    },
  });
  await finished;
  await consumer.disconnect();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
