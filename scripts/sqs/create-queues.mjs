// Create (idempotently) a FIFO queue and its FIFO dead-letter queue with a redrive policy,
// speaking the SQS JSON protocol to any endpoint (fauxqs, moto or AWS-compatible).
// Prints the queue URLs as shell exports.
//
//   node create-queues.mjs http://127.0.0.1:9324 orders [maxReceiveCount]
const [endpoint, name, maxReceiveCount = "10"] = process.argv.slice(2);
if (!endpoint || !name) {
  console.error("usage: create-queues.mjs ENDPOINT NAME [MAX_RECEIVE_COUNT]");
  process.exit(2);
}

async function call(action, body) {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": `AmazonSQS.${action}`,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${action} failed with HTTP ${response.status}: ${text}`);
  }
  return text ? JSON.parse(text) : {};
}

// Create a queue, or bring an existing one's attributes up to date (CreateQueue refuses
// to change them).
async function ensureQueue(QueueName, Attributes) {
  try {
    return await call("CreateQueue", { QueueName, Attributes });
  } catch (error) {
    if (!String(error.message).includes("QueueNameExists")) throw error;
    const { QueueUrl } = await call("GetQueueUrl", { QueueName });
    const { FifoQueue, ...changeable } = Attributes;
    await call("SetQueueAttributes", { QueueUrl, Attributes: changeable });
    return { QueueUrl };
  }
}

const fifo = { FifoQueue: "true", ContentBasedDeduplication: "false" };
const dlq = await ensureQueue(`${name}-dlq.fifo`, { ...fifo, MessageRetentionPeriod: "1209600" });
const { Attributes } = await call("GetQueueAttributes", {
  QueueUrl: dlq.QueueUrl,
  AttributeNames: ["QueueArn"],
});
const main = await ensureQueue(`${name}.fifo`, {
  ...fifo,
  VisibilityTimeout: "60",
  MessageRetentionPeriod: "345600",
  RedrivePolicy: JSON.stringify({ deadLetterTargetArn: Attributes.QueueArn, maxReceiveCount }),
});
console.log(`export ORDERS_QUEUE_URL='${main.QueueUrl}'`);
console.log(`export ORDERS_DLQ_URL='${dlq.QueueUrl}'`);
