/*
 * openapi.c - the OpenAPI 3 document served at /openapi.json: the paths,
 * request fields and response shapes the frontend implements (and no
 * more).  Keep in step with request.c and handler.c.
 */
#include "core/frontend/internal.h"

#define ERR_RESP "{\"description\":\"error\",\"content\":{\"application/json\":{\"schema\":" \
	"{\"$ref\":\"#/components/schemas/Error\"}}}}"

#define AERR_RESP "{\"description\":\"error\",\"content\":{\"application/json\":{\"schema\":" \
	"{\"$ref\":\"#/components/schemas/AnthropicError\"}}}}"

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
"\"/v1/responses\":{\"post\":{\"summary\":\"OpenAI Responses API (stateless: no " \
    "previous_response_id; text.format goes to response_format)\"," \
  SEC \
  "\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":" \
    "{\"$ref\":\"#/components/schemas/ResponsesRequest\"}}}}," \
  "\"responses\":{\"200\":{\"description\":\"a response object, or with stream=true " \
    "Server-Sent Events (response.created ... response.completed)\"," \
    "\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Response\"}}," \
    "\"text/event-stream\":{\"schema\":{\"$ref\":\"#/components/schemas/SseEvent\"}}}}," \
  "\"400\":" ERR_RESP ",\"401\":" ERR_RESP ",\"404\":" ERR_RESP ",\"405\":" ERR_RESP ",\"413\":" ERR_RESP \
  ",\"500\":" ERR_RESP ",\"503\":" ERR_RESP "}}}," \
"\"/v1/messages\":{\"post\":{\"summary\":\"Anthropic Messages API (the key also as " \
    "x-api-key); errors in Anthropic's shape\"," \
  SEC \
  "\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":" \
    "{\"$ref\":\"#/components/schemas/MessagesRequest\"}}}}," \
  "\"responses\":{\"200\":{\"description\":\"a message object, or with stream=true " \
    "Server-Sent Events (message_start ... message_stop)\"," \
    "\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Message\"}}," \
    "\"text/event-stream\":{\"schema\":{\"$ref\":\"#/components/schemas/SseEvent\"}}}}," \
  "\"400\":" AERR_RESP ",\"401\":" AERR_RESP ",\"404\":" AERR_RESP ",\"405\":" ERR_RESP ",\"413\":" ERR_RESP \
  ",\"500\":" AERR_RESP ",\"503\":" AERR_RESP "}}}," \
"\"/v1/messages/count_tokens\":{\"post\":{\"summary\":\"The prompt's tokens of a Messages " \
    "API request (max_tokens not needed)\"," \
  SEC \
  "\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":" \
    "{\"$ref\":\"#/components/schemas/MessagesFields\"}}}}," \
  "\"responses\":{\"200\":{\"description\":\"the count\",\"content\":{\"application/json\":" \
    "{\"schema\":{\"type\":\"object\",\"required\":[\"input_tokens\"],\"properties\":" \
    "{\"input_tokens\":{\"type\":\"integer\",\"minimum\":0}}}}}}," \
  "\"400\":" AERR_RESP ",\"401\":" AERR_RESP ",\"404\":" AERR_RESP ",\"405\":" ERR_RESP ",\"413\":" ERR_RESP \
  ",\"500\":" AERR_RESP "}}}," \
"\"/v1/embeddings\":{\"post\":{\"summary\":\"Embeddings (models served by the embed engine)\"," \
  SEC \
  "\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":" \
    "{\"$ref\":\"#/components/schemas/EmbeddingRequest\"}}}}," \
  "\"responses\":{\"200\":{\"description\":\"a list of embedding objects\"," \
    "\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Embeddings\"}}}}," \
  "\"400\":" ERR_RESP ",\"401\":" ERR_RESP ",\"404\":" ERR_RESP ",\"405\":" ERR_RESP ",\"413\":" ERR_RESP \
  ",\"502\":" ERR_RESP ",\"503\":" ERR_RESP "}}}," \
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
"\"SseEvent\":{\"type\":\"object\",\"description\":\"one Server-Sent Event: its " \
  "name and its data (a JSON object whose type is the name)\",\"required\":[\"data\"]," \
  "\"properties\":{\"event\":{\"type\":\"string\"},\"data\":{\"type\":\"string\"}}}," \
"\"AnthropicError\":{\"type\":\"object\",\"required\":[\"type\",\"error\"],\"properties\":{" \
  "\"type\":{\"type\":\"string\",\"enum\":[\"error\"]},\"error\":{\"type\":\"object\"," \
  "\"required\":[\"type\",\"message\"],\"properties\":{\"type\":{\"type\":\"string\"}," \
  "\"message\":{\"type\":\"string\"}}}}}," \
"\"TextPart\":{\"type\":\"object\",\"required\":[\"type\",\"text\"],\"properties\":{" \
  "\"type\":{\"type\":\"string\",\"enum\":[\"input_text\",\"output_text\",\"text\"]}," \
  "\"text\":{\"type\":\"string\"}}}," \
"\"ResponsesContent\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":" \
  "{\"$ref\":\"#/components/schemas/TextPart\"}}]}," \
"\"ResponsesRequest\":{\"type\":\"object\",\"required\":[\"model\",\"input\"],\"properties\":{" \
  "\"model\":{\"type\":\"string\"}," \
  "\"input\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"minItems\":1,\"items\":{\"anyOf\":[" \
    "{\"type\":\"object\",\"required\":[\"role\",\"content\"],\"properties\":{" \
      "\"type\":{\"type\":\"string\",\"enum\":[\"message\"]}," \
      "\"role\":{\"type\":\"string\",\"enum\":[\"user\",\"system\",\"developer\",\"assistant\"]}," \
      "\"content\":{\"$ref\":\"#/components/schemas/ResponsesContent\"}}}," \
    "{\"type\":\"object\",\"required\":[\"type\",\"call_id\",\"name\",\"arguments\"],\"properties\":{" \
      "\"type\":{\"type\":\"string\",\"enum\":[\"function_call\"]},\"call_id\":{\"type\":\"string\"}," \
      "\"name\":{\"type\":\"string\"},\"arguments\":{\"type\":\"string\"}}}," \
    "{\"type\":\"object\",\"required\":[\"type\",\"call_id\",\"output\"],\"properties\":{" \
      "\"type\":{\"type\":\"string\",\"enum\":[\"function_call_output\"]},\"call_id\":{\"type\":\"string\"}," \
      "\"output\":{\"$ref\":\"#/components/schemas/ResponsesContent\"}}}," \
    "{\"type\":\"object\",\"required\":[\"type\"],\"description\":\"earlier reasoning: the " \
      "assistant's reasoning_content\",\"properties\":{\"type\":{\"type\":\"string\",\"enum\":[\"reasoning\"]}," \
      "\"content\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"text\"]," \
      "\"properties\":{\"text\":{\"type\":\"string\"}}}}}}]}}]}," \
  "\"instructions\":{\"nullable\":true,\"type\":\"string\"}," \
  "\"max_output_tokens\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":1000000000}," \
  "\"temperature\":{\"nullable\":true,\"type\":\"number\",\"minimum\":0,\"maximum\":2}," \
  "\"top_p\":{\"nullable\":true,\"type\":\"number\",\"exclusiveMinimum\":true,\"minimum\":0,\"maximum\":1}," \
  "\"stream\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"tools\":{\"nullable\":true,\"type\":\"array\",\"description\":\"function tools " \
    "{type, name, description, parameters} (given to the chat template)\",\"items\":{\"type\":\"object\"," \
    "\"required\":[\"type\",\"name\"],\"properties\":{\"type\":{\"type\":\"string\",\"enum\":[\"function\"]}," \
    "\"name\":{\"type\":\"string\"}}}}," \
  "\"tool_choice\":{\"type\":\"string\",\"nullable\":true,\"enum\":[\"none\",\"auto\",null]," \
    "\"description\":\"also \\\"required\\\" or {type: function, name} naming one of tools: the output " \
    "is constrained to calls (dyn-frontend(1)); those need tools, so they are left out of this schema\"}," \
  "\"reasoning\":{\"nullable\":true,\"type\":\"object\",\"properties\":{\"effort\":{\"nullable\":true," \
    "\"type\":\"string\",\"description\":\"the chat template's reasoning_effort\"}}}}}," \
"\"Response\":{\"type\":\"object\",\"required\":[\"id\",\"object\",\"status\",\"output\"],\"properties\":{" \
  "\"id\":{\"type\":\"string\"},\"object\":{\"type\":\"string\",\"enum\":[\"response\"]}," \
  "\"created_at\":{\"type\":\"integer\"},\"model\":{\"type\":\"string\"}," \
  "\"status\":{\"type\":\"string\",\"enum\":[\"completed\",\"incomplete\"]}," \
  "\"output\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"type\"],\"properties\":{" \
    "\"type\":{\"type\":\"string\",\"enum\":[\"message\",\"reasoning\",\"function_call\"]}}}}," \
  "\"usage\":{\"type\":\"object\",\"properties\":{\"input_tokens\":{\"type\":\"integer\"}," \
    "\"output_tokens\":{\"type\":\"integer\"},\"total_tokens\":{\"type\":\"integer\"}}}}}," \
"\"TextBlock\":{\"type\":\"object\",\"required\":[\"type\",\"text\"],\"properties\":{" \
  "\"type\":{\"type\":\"string\",\"enum\":[\"text\"]},\"text\":{\"type\":\"string\"}}}," \
"\"MessagesRequest\":{\"allOf\":[{\"$ref\":\"#/components/schemas/MessagesFields\"}," \
  "{\"type\":\"object\",\"required\":[\"max_tokens\"]}]}," \
"\"MessagesFields\":{\"type\":\"object\",\"required\":[\"model\",\"messages\"],\"properties\":{" \
  "\"model\":{\"type\":\"string\"}," \
  "\"max_tokens\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000000000}," \
  "\"system\":{\"nullable\":true,\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":" \
    "{\"$ref\":\"#/components/schemas/TextBlock\"}}]}," \
  "\"messages\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"oneOf\":[" \
    "{\"type\":\"object\",\"required\":[\"role\",\"content\"],\"properties\":{" \
      "\"role\":{\"type\":\"string\",\"enum\":[\"user\"]},\"content\":{\"oneOf\":[{\"type\":\"string\"}," \
      "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"$ref\":\"#/components/schemas/TextBlock\"}," \
      "{\"type\":\"object\",\"required\":[\"type\",\"tool_use_id\"],\"properties\":{" \
        "\"type\":{\"type\":\"string\",\"enum\":[\"tool_result\"]},\"tool_use_id\":{\"type\":\"string\"}," \
        "\"content\":{\"nullable\":true,\"oneOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":" \
        "{\"$ref\":\"#/components/schemas/TextBlock\"}}]}}}]}}]}}}," \
    "{\"type\":\"object\",\"required\":[\"role\",\"content\"],\"properties\":{" \
      "\"role\":{\"type\":\"string\",\"enum\":[\"assistant\"]},\"content\":{\"oneOf\":[{\"type\":\"string\"}," \
      "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"$ref\":\"#/components/schemas/TextBlock\"}," \
      "{\"type\":\"object\",\"required\":[\"type\",\"id\",\"name\",\"input\"],\"properties\":{" \
        "\"type\":{\"type\":\"string\",\"enum\":[\"tool_use\"]},\"id\":{\"type\":\"string\"}," \
        "\"name\":{\"type\":\"string\"},\"input\":{\"type\":\"object\"}}}," \
      "{\"type\":\"object\",\"required\":[\"type\"],\"properties\":{\"type\":{\"type\":\"string\"," \
        "\"enum\":[\"thinking\",\"redacted_thinking\"]}}}]}}]}}}]}}," \
  "\"temperature\":{\"nullable\":true,\"type\":\"number\",\"minimum\":0,\"maximum\":2}," \
  "\"top_p\":{\"nullable\":true,\"type\":\"number\",\"exclusiveMinimum\":true,\"minimum\":0,\"maximum\":1}," \
  "\"top_k\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":-1,\"maximum\":1000000000}," \
  "\"stop_sequences\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":16}," \
  "\"stream\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"tools\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"object\"," \
    "\"required\":[\"name\",\"input_schema\"],\"properties\":{\"type\":{\"type\":\"string\",\"enum\":[\"custom\"]}," \
    "\"name\":{\"type\":\"string\"},\"description\":{\"type\":\"string\"},\"input_schema\":{\"type\":\"object\"}}}}," \
  "\"tool_choice\":{\"nullable\":true,\"type\":\"object\",\"required\":[\"type\"],\"description\":" \
    "\"also {type: any} or {type: tool, name} naming one of tools: the output is constrained to calls " \
    "(dyn-frontend(1)); those need tools, so they are left out of this schema\",\"properties\":{" \
    "\"type\":{\"type\":\"string\",\"enum\":[\"auto\",\"none\"]}}}," \
  "\"thinking\":{\"nullable\":true,\"type\":\"object\",\"required\":[\"type\"],\"description\":" \
    "\"the chat template's enable_thinking\",\"properties\":{\"type\":{\"type\":\"string\"," \
    "\"enum\":[\"enabled\",\"disabled\"]}}}}}," \
"\"Message\":{\"type\":\"object\",\"required\":[\"id\",\"type\",\"role\",\"content\",\"stop_reason\"]," \
  "\"properties\":{\"id\":{\"type\":\"string\"},\"type\":{\"type\":\"string\",\"enum\":[\"message\"]}," \
  "\"role\":{\"type\":\"string\",\"enum\":[\"assistant\"]},\"model\":{\"type\":\"string\"}," \
  "\"content\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"type\"],\"properties\":{" \
    "\"type\":{\"type\":\"string\",\"enum\":[\"text\",\"thinking\",\"tool_use\"]}}}}," \
  "\"stop_reason\":{\"type\":\"string\",\"enum\":[\"end_turn\",\"max_tokens\",\"stop_sequence\",\"tool_use\"]}," \
  "\"stop_sequence\":{\"type\":\"string\",\"nullable\":true}," \
  "\"usage\":{\"type\":\"object\",\"properties\":{\"input_tokens\":{\"type\":\"integer\"}," \
    "\"output_tokens\":{\"type\":\"integer\"}}}}}," \
"\"Model\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}," \
  "\"object\":{\"type\":\"string\",\"enum\":[\"model\"]},\"created\":{\"type\":\"integer\"}," \
  "\"owned_by\":{\"type\":\"string\"},\"context_length\":{\"type\":\"integer\"}," \
  "\"dyn\":{\"type\":\"object\",\"description\":\"dyn's extension: the model's worker " \
    "pools (workers with a live instance record, by role; prefill: those that share the " \
    "decode workers' KV layout). A model with prefill workers is served disaggregated.\"," \
    "\"properties\":{\"pools\":{\"type\":\"object\",\"properties\":{" \
    "\"agg\":{\"type\":\"integer\",\"minimum\":0},\"prefill\":{\"type\":\"integer\",\"minimum\":0}," \
    "\"decode\":{\"type\":\"integer\",\"minimum\":0}}}," \
    "\"type\":{\"type\":\"string\",\"enum\":[\"embedding\"],\"description\":\"present for " \
    "embedding models, which serve /v1/embeddings only\"},\"embedding_dim\":{\"type\":\"integer\"}," \
    "\"dimensions_truncatable\":{\"type\":\"boolean\"}}}}}," \
"\"EmbeddingRequest\":{\"type\":\"object\",\"required\":[\"model\",\"input\"],\"properties\":{" \
  "\"model\":{\"type\":\"string\"}," \
  "\"input\":{\"oneOf\":[{\"type\":\"string\",\"minLength\":1},{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":1},\"minItems\":1,\"maxItems\":2048}," \
    "{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":2147483647}}," \
    "{\"type\":\"array\",\"minItems\":1,\"maxItems\":2048,\"items\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":2147483647}}}]}," \
  "\"encoding_format\":{\"nullable\":true,\"type\":\"string\",\"enum\":[\"float\",\"base64\",null],\"description\":\"base64: " \
    "little-endian float32s\"}," \
  "\"dimensions\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":1,\"maximum\":1048576,\"description\":\"fewer dimensions " \
    "(cut and re-normalized) where the model allows it; else only its own\"}," \
  "\"user\":{\"nullable\":true,\"type\":\"string\"}}}," \
"\"Embeddings\":{\"type\":\"object\",\"properties\":{\"object\":{\"type\":\"string\",\"enum\":[\"list\"]}," \
  "\"model\":{\"type\":\"string\"},\"data\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{" \
    "\"object\":{\"type\":\"string\",\"enum\":[\"embedding\"]},\"index\":{\"type\":\"integer\"}," \
    "\"embedding\":{\"oneOf\":[{\"type\":\"array\",\"items\":{\"type\":\"number\"}},{\"type\":\"string\"}]}}}}," \
  "\"usage\":{\"type\":\"object\",\"properties\":{\"prompt_tokens\":{\"type\":\"integer\"}," \
    "\"total_tokens\":{\"type\":\"integer\"}}}}}," \
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
  "\"n\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":1,\"maximum\":16,\"description\":\"samples " \
    "per prompt (choices n per prompt; the prompt counted once in usage); a seed gives " \
    "sample i the seed + i\"}," \
  "\"logit_bias\":{\"nullable\":true,\"type\":\"object\",\"maxProperties\":300,\"description\":\"token id " \
    "(a decimal string) to a bias added to its logit before sampling (greedy too); -100 " \
    "bans it; a key that is not an id of the model's vocabulary is a 400\"," \
    "\"additionalProperties\":{\"type\":\"number\"," \
    "\"minimum\":-100,\"maximum\":100}}," \
  "\"include_stop_str_in_output\":{\"nullable\":true,\"type\":\"boolean\",\"default\":false," \
    "\"description\":\"keep the stop string that ended the output (vLLM's)\"}," \
  "\"prompt_logprobs\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":20," \
    "\"description\":\"vLLM's: every prompt token's logprob (null for the first) with this " \
    "many alternatives, computed by the engine; not with stream\"}," \
  "\"user\":{\"nullable\":true,\"type\":\"string\"}," \
  "\"ignore_eos\":{\"nullable\":true,\"type\":\"boolean\"}," \
  "\"min_tokens\":{\"nullable\":true,\"type\":\"integer\",\"minimum\":0,\"maximum\":1000000000}," \
  "\"response_format\":{\"nullable\":true,\"type\":\"object\",\"required\":[\"type\"],\"description\":\"structured " \
    "output (dyn-frontend(1) STRUCTURED OUTPUT): json_object, or json_schema {name, schema, strict " \
    "(false: unsupported keywords ignored rather than refused)}\",\"anyOf\":[{\"properties\":{\"type\":" \
    "{\"enum\":[\"text\",\"json_object\"]}}},{\"required\":[\"json_schema\"]}],\"properties\":{\"type\":{\"type\":\"string\"," \
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
  "\"not\":{\"required\":[\"stream\",\"prompt_logprobs\"],\"properties\":{\"stream\":{\"enum\":[true]}," \
    "\"prompt_logprobs\":{\"type\":\"integer\"}}}," \
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
  "\"tools\":{\"nullable\":true,\"type\":\"array\",\"items\":{\"type\":\"object\"},\"description\":" \
    "\"given to the chat template; with --tool-call-parser, calls in the output become " \
    "message.tool_calls (unless tool_choice is none)\"}," \
  "\"tool_choice\":{\"type\":\"string\",\"nullable\":true,\"enum\":[\"none\",\"auto\",null],\"description\":" \
    "\"also \\\"required\\\" or {type: function, function: {name}} naming one of tools: the output is " \
    "constrained to calls of the tools, answered as tool_calls (dyn-frontend(1)); those need tools, so " \
    "they are left out of this schema\"}," \
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
    "\"role\":{\"type\":\"string\"},\"content\":{\"type\":\"string\",\"nullable\":true," \
    "\"description\":\"the text outside tool calls and reasoning; null when there is none " \
    "besides them\"}," \
    "\"reasoning_content\":{\"type\":\"string\",\"nullable\":true,\"description\":\"with " \
    "--reasoning-parser: the model's reasoning\"}," \
    "\"reasoning\":{\"type\":\"string\",\"nullable\":true,\"description\":\"the same as " \
    "reasoning_content\"}," \
    "\"tool_calls\":{\"type\":\"array\",\"description\":\"with --tool-call-parser and tools: " \
    "the calls parsed from the output\",\"items\":{\"$ref\":\"#/components/schemas/ToolCall\"}}}}," \
    "\"logprobs\":{\"type\":\"object\",\"nullable\":true}," \
    "\"finish_reason\":{\"type\":\"string\",\"enum\":[\"stop\",\"length\",\"tool_calls\"]}}}}," \
  "\"prompt_logprobs\":{\"$ref\":\"#/components/schemas/PromptLogprobs\"}," \
  "\"usage\":{\"$ref\":\"#/components/schemas/Usage\"}}}," \
"\"PromptLogprobs\":{\"type\":\"array\",\"nullable\":true,\"description\":\"with prompt_logprobs: " \
  "null for the first prompt token, then per token its id and the alternatives' (decimal " \
  "strings) to {logprob, rank, decoded_token}\",\"items\":{\"type\":\"object\",\"nullable\":true," \
  "\"additionalProperties\":{\"type\":\"object\",\"properties\":{\"logprob\":{\"type\":\"number\"}," \
  "\"rank\":{\"type\":\"integer\"},\"decoded_token\":{\"type\":\"string\"}}}}}," \
"\"ToolCall\":{\"type\":\"object\",\"required\":[\"id\",\"type\",\"function\"],\"properties\":{" \
  "\"id\":{\"type\":\"string\"},\"type\":{\"type\":\"string\",\"enum\":[\"function\"]}," \
  "\"function\":{\"type\":\"object\",\"required\":[\"name\",\"arguments\"],\"properties\":{" \
    "\"name\":{\"type\":\"string\"},\"arguments\":{\"type\":\"string\",\"description\":" \
    "\"a JSON object's text\"}}}}}," \
"\"Completion\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}," \
  "\"object\":{\"type\":\"string\",\"enum\":[\"text_completion\"]},\"created\":{\"type\":\"integer\"}," \
  "\"model\":{\"type\":\"string\"},\"system_fingerprint\":{\"type\":\"string\"}," \
  "\"choices\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{" \
    "\"index\":{\"type\":\"integer\"},\"text\":{\"type\":\"string\"}," \
    "\"logprobs\":{\"type\":\"object\",\"nullable\":true,\"description\":\"with echo, the " \
    "prompt's tokens first (the first one's logprob and top_logprobs null)\"}," \
    "\"prompt_logprobs\":{\"$ref\":\"#/components/schemas/PromptLogprobs\"}," \
    "\"finish_reason\":{\"type\":\"string\",\"enum\":[\"stop\",\"length\"]}}}}," \
  "\"usage\":{\"$ref\":\"#/components/schemas/Usage\"}}}" \
"}}}"

/* With an API key every /v1/ operation says it needs the bearer token;
 * without one none does (the server asks for none). */
const char fe_openapi_json_keyed[] =
	OPENAPI_DOC("\"security\":[{\"bearer\":[]}],",
		    "\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\"}},");
const char fe_openapi_json_open[] = OPENAPI_DOC("", "");
