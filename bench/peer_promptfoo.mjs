// promptfoo's side of bench/peers.py, run by node with the peers' own promptfoo install.
//
// Usage: node bench/peer_promptfoo.mjs PROMPTFOO_ENTRY GRADER_BASE_URL TESTS CONCURRENCY
//
// One prompt on the echo provider, TESTS tests, each with one llm-rubric assertion whose grader
// is an OpenAI-compatible mock (bench/mock_grader.py) at GRADER_BASE_URL. Output is minimal:
// no cache, no results database, no output file, no progress bar. The evaluation's wall clock
// runs from just before evaluate() to the end of its summary; the figures go to stdout as one
// JSON line.
import { pathToFileURL } from 'node:url';

const [entry, graderBaseUrl, testsArg, concurrencyArg] = process.argv.slice(2);
const { evaluate } = await import(pathToFileURL(entry).href);
const tests = Number(testsArg);

const suite = {
  prompts: ['Answer in a sentence: which value wins in case {{index}}?'],
  providers: ['echo'],
  defaultTest: {
    options: {
      provider: {
        id: 'openai:chat:mock-grader',
        config: { apiBaseUrl: graderBaseUrl, apiKey: 'local-mock' },
      },
    },
  },
  tests: Array.from({ length: tests }, (_, index) => ({
    vars: { index },
    assert: [{ type: 'llm-rubric', value: 'Names the value that wins' }],
  })),
  writeLatestResults: false,
};

const started = performance.now();
const record = await evaluate(suite, {
  cache: false,
  maxConcurrency: Number(concurrencyArg),
  showProgressBar: false,
});
const summary = await record.toEvaluateSummary();
const seconds = (performance.now() - started) / 1000;
console.log(
  JSON.stringify({
    results: summary.results.length,
    successes: summary.stats.successes,
    failures: summary.stats.failures,
    errors: summary.stats.errors,
    seconds,
  }),
);
