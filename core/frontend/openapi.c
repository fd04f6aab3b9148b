/*
 * openapi.c - the OpenAPI 3 document served at /openapi.json: the paths,
 * request fields and response shapes the frontend implements (and no
 * more).  Keep in step with request.c and handler.c.
 */
#include "core/frontend/internal.h"

#define ERR_RESP "{\"description\":\"error\",\"content\":{\"application/json\":{\"schema\":" \
	"{\"$ref\":\"#/components/schemas/Error\"}}}}"

#define OPENAPI_DOC(SEC, SCHEMES) \
"{\"openapi\":\"3.0.3\"," \
"\"info\":{\"title\":\"dyn OpenAI-compatible API\",\"version\":\"" DYN_VERSION "\"}," \
"\"paths\":{" \
"\"/v1/chat/completions\":{\"post\":{\"summary\":\"Chat completion\"," \
  SEC \
  "\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":" \
    "{\"$ref\":\"#/components/schemas/ChatRequest\"}}}}," \
  "\"responses\":{\"200\":{\"description\":\"a chat.completion object, or with stream=true " \
    "Server-Sent Events of chat.completion.chunk objects ended by data: [DONE]\"," \
    "\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/ChatCompletion\"}}," \
    "\"text/event-stream\":{\"schema\":{\"type\":\"string\"}}}}," \
  "\"400\":" ERR_RESP ",\"401\":" ERR_RESP ",\"404\":" ERR_RESP ",\"405\":" ERR_RESP ",\"413\":" ERR_RESP \
  ",\"500\":" ERR_RESP ",\"503\":" ERR_RESP "}}}," \
"\"/v1/completions\":{\"post\":{\"summary\":\"Text completion\"," \
  SEC \
  "\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":" \
    "{\"$ref\":\"#/components/schemas/CompletionRequest\"}}}}," \
  "\"responses\":{\"200\":{\"description\":\"a text_completion object, or with stream=true " \
    "Server-Sent Events of text_completion objects ended by data: [DONE]\"," \
    "\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Completion\"}}," \
    "\"text/event-stream\":{\"schema\":{\"type\":\"string\"}}}}," \
  "\"400\":" ERR_RESP ",\"401\":" ERR_RESP ",\"404\":" ERR_RESP ",\"405\":" ERR_RESP ",\"413\":" ERR_RESP \
  ",\"500\":" ERR_RESP ",\"503\":" ERR_RESP "}}}," \
"\"/v1/models\":{\"get\":{\"summary\":\"Models with at least one worker\"," \
  SEC \
  "\"responses\":{\"200\":{\"description\":\"list\",\"content\":{\"application/json\":" \
    "{\"schema\":{\"type\":\"object\",\"properties\":{\"object\":{\"type\":\"string\"," \
    "\"enum\":[\"list\"]},\"data\":{\"type\":\"array\",\"items\":{\"$ref\":" \
    "\"#/components/schemas/Model\"}}}}}}},\"401\":" ERR_RESP ",\"405\":" ERR_RESP "}}}," \
"\"/v1/models/{model}\":{\"get\":{\"summary\":\"One model\"," \
  SEC \
  "\"parameters\":[{\"name\":\"model\",\"in\":\"path\",\"required\":true,\"schema\":{\"type\":\"string\"}}]," \
  "\"responses\":{\"200\":{\"description\":\"the model\",\"content\":{\"application/json\":" \
    "{\"schema\":{\"$ref\":\"#/components/schemas/Model\"}}}},\"401\":" ERR_RESP \
    ",\"404\":" ERR_RESP ",\"405\":" ERR_RESP "}}}," \
"\"/health\":{\"get\":{\"summary\":\"Readiness: 200 while serving, 503 when stopping\"," \
  "\"responses\":{\"200\":{\"description\":\"healthy\"},\"503\":{\"description\":\"stopping\"},\"405\":" ERR_RESP "}}}," \
"\"/live\":{\"get\":{\"summary\":\"Liveness\",\"responses\":{\"200\":{\"description\":\"live\"},\"405\":" ERR_RESP "}}}," \
"\"/metrics\":{\"get\":{\"summary\":\"Prometheus metrics\",\"responses\":{\"200\":" \
  "{\"description\":\"text format 0.0.4\",\"content\":{\"text/plain\":{\"schema\":{\"type\":\"string\"}}}},\"405\":" ERR_RESP "}}}," \
"\"/openapi.json\":{\"get\":{\"summary\":\"This document\",\"responses\":{\"200\":" \
  "{\"description\":\"OpenAPI 3\"},\"405\":" ERR_RESP "}}}" \
"}," \
"\"components\":{" \
SCHEMES \
"\"schemas\":{" \
"\"Error\":{\"type\":\"object\",\"properties\":{\"error\":{\"type\":\"object\",\"properties\":{" \
  "\"message\":{\"type\":\"string\"},\"type\":{\"type\":\"string\"}," \
  "\"param\":{\"type\":\"string\",\"nullable\":true},\"code\":{\"nullable\":true}}}}}," \
"\"Model\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}," \
  "\"object\":{\"type\":\"string\",\"enum\":[\"model\"]},\"created\":{\"type\":\"integer\"}," \
  "\"owned_by\":{\"type\":\"string\"},\"context_length\":{\"type\":\"integer\"}," \
  "\"dyn\":{\"type\":\"object\",\"description\":\"dyn's extension: the model's worker " \
    "pools (workers with a live instance record, by role; prefill: those that share the " \
    "decode workers' KV layout). A model with prefill workers is served disaggregated.\"," \
    "\"properties\":{\"pools\":{\"type\":\"object\",\"properties\":{" \
    "\"agg\":{\"type\":\"integer\",\"minimum\":0},\"prefill\":{\"type\":\"integer\",\"minimum\":0}," \
    "\"decode\":{\"type\":\"integer\",\"minimum\":0}}}}}}}," \
"\"Sampling\":{\"type\":\"object\",\"properties\":{" \
  "\"model\":{\"type\":\"string\"}," \
  "\"stream\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"stream_options\":{\"nullable\":true,\"type\":\"object\",\"properties\":{\"include_usage\":{\"type\":\"boolean\",\"nullable\":true}}}," \
  "\"max_tokens\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":1000000000,\"description\":\"tokens to " \
    "generate at most; default 16 for /v1/completions, until the end of sequence or of the " \
    "context for /v1/chat/completions\"}," \
  "\"max_completion_tokens\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":1000000000}," \
  "\"temperature\":{\"nullable\":true,\"type\":\"number\",\"minimum\":0,\"maximum\":2}," \
  "\"top_p\":{\"nullable\":true,\"type\":\"number\",\"exclusiveMinimum\":true,\"minimum\":0,\"maximum\":1}," \
  "\"top_k\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":-1,\"maximum\":1000000000}," \
  "\"min_p\":{\"nullable\":true,\"type\":\"number\",\"minimum\":0,\"maximum\":1}," \
  "\"seed\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":-9200000000000000000,\"maximum\":18000000000000000000}," \
  "\"stop\":{\"oneOf\":[{\"type\":\"string\",\"nullable\":true},{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":16}]}," \
  "\"presence_penalty\":{\"nullable\":true,\"type\":\"number\",\"minimum\":-2,\"maximum\":2}," \
  "\"frequency_penalty\":{\"nullable\":true,\"type\":\"number\",\"minimum\":-2,\"maximum\":2}," \
  "\"repetition_penalty\":{\"nullable\":true,\"type\":\"number\",\"exclusiveMinimum\":true,\"minimum\":0,\"maximum\":100}," \
  "\"n\":{\"nullable\":true,\"type\":\"integer\",\"enum\":[1]}," \
  "\"user\":{\"nullable\":true,\"type\":\"string\"}," \
  "\"ignore_eos\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"min_tokens\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":1000000000}," \
  "\"response_format\":{\"nullable\":true,\"type\":\"object\",\"required\":[\"type\"],\"description\":\"structured " \
    "output (dyn-frontend(1) STRUCTURED OUTPUT): json_object, or json_schema {name, schema, strict " \
    "(false: unsupported keywords ignored rather than refused)}\",\"properties\":{\"type\":{\"type\":\"string\"," \
    "\"enum\":[\"text\",\"json_object\",\"json_schema\"]},\"json_schema\":{\"type\":\"object\",\"required\":[\"schema\"]," \
    "\"properties\":{\"name\":{\"type\":\"string\"},\"schema\":{\"oneOf\":[{\"type\":\"object\"},{\"type\":\"boolean\"}]}," \
    "\"strict\":{\"type\":\"boolean\",\"nullable\":true}}}}}," \
  "\"structured_outputs\":{\"nullable\":true,\"type\":\"object\",\"description\":\"vLLM's: one of json, regex, " \
    "choice, grammar (GBNF), json_object\",\"properties\":{\"json\":{\"oneOf\":[{\"type\":\"object\"},{\"type\":\"string\"}]}," \
    "\"regex\":{\"type\":\"string\"},\"choice\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}," \
    "\"grammar\":{\"type\":\"string\"},\"json_object\":{\"type\":\"boolean\"}}}," \
  "\"guided_json\":{\"nullable\":true,\"oneOf\":[{\"type\":\"object\"},{\"type\":\"string\"}],\"description\":\"a JSON " \
    "Schema the output follows\"}," \
  "\"guided_regex\":{\"nullable\":true,\"type\":\"string\",\"description\":\"a regex the whole output matches\"}," \
  "\"guided_choice\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"the " \
    "output is one of these strings\"}," \
  "\"guided_grammar\":{\"nullable\":true,\"type\":\"string\",\"description\":\"a GBNF grammar (llama.cpp's " \
    "dialect) the output is a sentence of\"}}," \
  "\"required\":[\"model\"],\"anyOf\":[{\"not\":{\"required\":[\"stream_options\"]}},{\"properties\":{\"stream_options\":{\"enum\":[null]}}},{\"required\":[\"stream\"],\"properties\":{\"stream\":{\"enum\":[true]}}}]}," \
"\"ChatRequest\":{\"allOf\":[{\"$ref\":\"#/components/schemas/Sampling\"},{\"type\":\"object\"," \
  "\"anyOf\":[{\"not\":{\"required\":[\"top_logprobs\"]}},{\"properties\":{\"top_logprobs\":{\"enum\":[null,0]}}},{\"required\":[\"logprobs\"],\"properties\":{\"logprobs\":{\"enum\":[true]}}}]," \
  "\"required\":[\"messages\"],\"properties\":{" \
  "\"messages\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"object\",\"required\":[\"role\"]," \
    "\"properties\":{\"role\":{\"type\":\"string\"},\"content\":{\"oneOf\":[{\"type\":\"string\"}," \
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"type\",\"text\"],\"properties\":{\"type\":{\"type\":\"string\"," \
    "\"enum\":[\"text\"]},\"text\":{\"type\":\"string\"}}}}]}}}}," \
  "\"logprobs\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"top_logprobs\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":20}," \
  "\"tools\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"object\"}}," \
  "\"tool_choice\":{\"description\":\"required / a named function: the output is constrained to " \
    "calls of the tools, answered as tool_calls\",\"oneOf\":[{\"type\":\"string\",\"nullable\":true," \
    "\"enum\":[\"none\",\"auto\",\"required\",null]},{\"type\":\"object\",\"properties\":{\"type\":{\"type\":\"string\"}," \
    "\"function\":{\"type\":\"object\",\"required\":[\"name\"],\"properties\":{\"name\":{\"type\":\"string\"}}}}}]}," \
  "\"parallel_tool_calls\":{\"nullable\":true,\"type\":\"boolean\",\"description\":\"with tool_choice " \
    "required: false allows exactly one call\"}," \
  "\"documents\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"object\"}}," \
  "\"add_generation_prompt\":{\"nullable\":true,\"type\":\"boolean\",\"description\":\"default true, false " \
    "with continue_final_message\"}," \
  "\"continue_final_message\":{\"nullable\":true,\"type\":\"boolean\",\"default\":false}," \
  "\"chat_template_kwargs\":{\"nullable\":true,\"type\":\"object\"}}}]}," \
"\"CompletionRequest\":{\"allOf\":[{\"$ref\":\"#/components/schemas/Sampling\"},{\"type\":\"object\"," \
  "\"required\":[\"prompt\"],\"properties\":{" \
  "\"prompt\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":256}," \
    "{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":2147483647}}," \
    "{\"type\":\"array\",\"minItems\":1,\"maxItems\":256,\"items\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":2147483647}}}]}," \
  "\"echo\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"logprobs\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":20}}}]}," \
"\"Usage\":{\"type\":\"object\",\"properties\":{\"prompt_tokens\":{\"type\":\"integer\"}," \
  "\"completion_tokens\":{\"type\":\"integer\"},\"total_tokens\":{\"type\":\"integer\"}," \
  "\"prompt_tokens_details\":{\"type\":\"object\",\"properties\":" \
    "{\"cached_tokens\":{\"type\":\"integer\"}}}}}," \
"\"ChatCompletion\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}," \
  "\"object\":{\"type\":\"string\",\"enum\":[\"chat.completion\"]},\"created\":{\"type\":\"integer\"}," \
  "\"model\":{\"type\":\"string\"},\"system_fingerprint\":{\"type\":\"string\"}," \
  "\"choices\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{" \
    "\"index\":{\"type\":\"integer\"},\"message\":{\"type\":\"object\",\"properties\":{" \
    "\"role\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"}}}," \
    "\"logprobs\":{\"type\":\"object\",\"nullable\":true}," \
    "\"finish_reason\":{\"type\":\"string\",\"enum\":[\"stop\",\"length\"]}}}}," \
  "\"usage\":{\"$ref\":\"#/components/schemas/Usage\"}}}," \
"\"Completion\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}," \
  "\"object\":{\"type\":\"string\",\"enum\":[\"text_completion\"]},\"created\":{\"type\":\"integer\"}," \
  "\"model\":{\"type\":\"string\"},\"system_fingerprint\":{\"type\":\"string\"}," \
  "\"choices\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{" \
    "\"index\":{\"type\":\"integer\"},\"text\":{\"type\":\"string\"}," \
    "\"logprobs\":{\"type\":\"object\",\"nullable\":true}," \
    "\"finish_reason\":{\"type\":\"string\",\"enum\":[\"stop\",\"length\"]}}}}," \
  "\"usage\":{\"$ref\":\"#/components/schemas/Usage\"}}}" \
"}}}"

/* With an API key every /v1/ operation says it needs the bearer token;
 * without one none does (the server asks for none). */
const char fe_openapi_json_keyed[] =
	OPENAPI_DOC("\"security\":[{\"bearer\":[]}],",
		    "\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\"}},");
const char fe_openapi_json_open[] = OPENAPI_DOC("", "");
