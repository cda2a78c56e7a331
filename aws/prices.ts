// What the stack costs per image, at the list prices and request counts README's cost section
// states: used by `cloudfetch plan` and bench/cost.ts, so both price the same way.

// us-east-1 list prices (USD) when this was written; Asian regions cost 10–30% more. Check
// aws.amazon.com/lambda/pricing, /s3/pricing, /sqs/pricing before relying on them.
export const PRICE = {
  lambdaGbSecondArm: 0.0000133334,
  lambdaRequest: 0.2 / 1e6,
  s3Write: 0.005 / 1000, // PUT, COPY, POST, LIST
  s3Read: 0.0004 / 1000, // GET, HEAD
  sqsRequest: 0.4 / 1e6,
  s3StorageGbMonth: 0.023,
  egressGb: 0.09,
};

/** SQS requests per image (send, receive, delete, redeliveries), as bench/cost.ts measured them. */
export const SQS_REQUESTS_PER_IMAGE = 0.3;

export interface CostInput {
  /** Entries queued as jobs: each costs a HEAD and a PUT (the image or its failure record). */
  jobs: number;
  /** Images stored, and their bytes. */
  images: number;
  bytes: number;
  gbSecondsPerImage: number;
  batchSize: number;
}

export interface Cost {
  s3Requests: number;
  sqsRequests: number;
  lambda: number;
  /** sync's GET per image and LIST per 1,000 keys; the fetch records' PUT per invocation and GET per sync. */
  syncRequests: number;
  egress: number;
  storageMonth: number;
  total: number;
}

export function costOf(c: CostInput): Cost {
  const gb = c.bytes / 1e9;
  const invocations = c.jobs / c.batchSize;
  const parts = {
    s3Requests: c.jobs * (PRICE.s3Read + PRICE.s3Write),
    sqsRequests: c.jobs * SQS_REQUESTS_PER_IMAGE * PRICE.sqsRequest,
    lambda: c.jobs * c.gbSecondsPerImage * PRICE.lambdaGbSecondArm + invocations * PRICE.lambdaRequest,
    syncRequests: c.images * (PRICE.s3Read + PRICE.s3Write / 1000) + invocations * (PRICE.s3Write + PRICE.s3Read),
    egress: gb * PRICE.egressGb,
    storageMonth: gb * PRICE.s3StorageGbMonth,
  };
  return { ...parts, total: Object.values(parts).reduce((a, b) => a + b, 0) };
}
