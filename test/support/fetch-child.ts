// The fetch function's real handler, run once in a process of its own, for a test that kills it
// mid-batch as Lambda ends an invocation that times out or runs out of memory: nothing after the
// kill runs, its `finally` included. The SQS event comes on stdin (JSON), the function's
// environment in this process's (the local cloud's env.fetch); the batch response goes to stdout.
// Usage: node fetch-child.ts <timeoutSeconds>

import { text } from 'node:stream/consumers';
import type { SQSEvent } from 'aws-lambda';
import { lambdaContext } from '../../local-cloud/cloud.ts';

const event = JSON.parse(await text(process.stdin)) as SQSEvent;
const { handler } = await import('../../aws/lambda/fetch.ts');
const context = lambdaContext({ name: process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'fetch', memoryMb: 1024, timeoutSeconds: Number(process.argv[2] ?? 120) }, process.env.AWS_REGION ?? 'us-east-1');
process.stdout.write(JSON.stringify(await handler(event, context)));
