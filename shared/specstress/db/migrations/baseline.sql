CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE public.analysis_settings (
    settings_id integer NOT NULL,
    outlier_min_gap integer NOT NULL,
    outlier_share numeric(7,6) NOT NULL,
    CONSTRAINT ck_analysis_settings_single_row CHECK ((settings_id = 1))
);

CREATE SEQUENCE public.analysis_settings_settings_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.analysis_settings_settings_id_seq OWNED BY public.analysis_settings.settings_id;

CREATE TABLE public.classifications (
    response_id character varying(32) NOT NULL,
    scenario_id character varying(32) NOT NULL,
    spectrum_id character varying(32) NOT NULL,
    classifier character varying(64) NOT NULL,
    value1_position integer NOT NULL,
    value1_confidence double precision,
    value1_reasoning text NOT NULL,
    value2_position integer NOT NULL,
    value2_confidence double precision,
    value2_reasoning text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    cut jsonb,
    CONSTRAINT ck_classifications_value1_position CHECK (((value1_position >= 0) AND (value1_position <= 6))),
    CONSTRAINT ck_classifications_value2_position CHECK (((value2_position >= 0) AND (value2_position <= 6)))
);

CREATE TABLE public.responses (
    response_id character varying(32) NOT NULL,
    scenario_id character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    text text NOT NULL,
    thinking text,
    params jsonb NOT NULL,
    llm_call_hash character varying(64) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    cut jsonb
);

CREATE TABLE public.verdicts (
    verdict_id character varying(32) NOT NULL,
    response_id character varying(32) NOT NULL,
    scenario_id character varying(32) NOT NULL,
    judge character varying(64) NOT NULL,
    spec_id character varying(64) NOT NULL,
    spec_version character varying(64) NOT NULL,
    decision character varying(16) NOT NULL,
    reasoning text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    cut jsonb,
    CONSTRAINT ck_verdicts_decision CHECK ((decision IN ('compliant', 'non-compliant', 'ambiguous')))
);

CREATE TABLE public.scenarios (
    scenario_id character varying(32) NOT NULL,
    pair_id character varying(32) NOT NULL,
    variant character varying(8) NOT NULL,
    generator character varying(64) NOT NULL,
    prompt_version character varying(32) NOT NULL,
    query text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_scenarios_variant CHECK ((variant IN ('neutral', 'value1', 'value2')))
);

CREATE TABLE public.selection_members (
    selection character varying(64) NOT NULL,
    scenario_id character varying(32) NOT NULL,
    rank integer NOT NULL,
    pick_distance double precision
);

CREATE TABLE public.dead_letters (
    dead_letter_id bigint NOT NULL,
    consumer character varying(64) NOT NULL,
    subject text NOT NULL,
    stream_sequence bigint,
    deliveries integer NOT NULL,
    reason text NOT NULL,
    payload text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    reason_code character varying(32) DEFAULT 'unclassified'::character varying NOT NULL,
    stage character varying(32),
    unit text,
    replayed_at timestamp with time zone,
    CONSTRAINT ck_dead_letters_ck_dead_letters_reason_code CHECK ((reason_code IN ('invalid_payload', 'unprocessable', 'invalid_bytes', 'oversize', 'schema_invalid', 'unparseable_output', 'provider_refused', 'content_filtered', 'quota_exhausted', 'budget_exhausted', 'deferred_too_long', 'stalled', 'max_deliveries', 'unclassified')))
);

CREATE SEQUENCE public.dead_letters_dead_letter_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.dead_letters_dead_letter_id_seq OWNED BY public.dead_letters.dead_letter_id;

CREATE TABLE public.disagreement (
    scenario_id character varying(32) NOT NULL,
    model_set character varying(64) NOT NULL,
    members integer NOT NULL,
    value1_std double precision NOT NULL,
    value2_std double precision NOT NULL,
    disagreement double precision NOT NULL,
    high boolean NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.discovered_models (
    provider character varying(64) NOT NULL,
    model_id text NOT NULL,
    model_key character varying(64),
    display_name text,
    provider_created_at timestamp with time zone,
    rule character varying(64),
    family character varying(64),
    status character varying(16) NOT NULL,
    entry jsonb,
    estimate_usd double precision,
    estimate jsonb,
    note text DEFAULT ''::text NOT NULL,
    first_seen timestamp with time zone DEFAULT now() NOT NULL,
    last_seen timestamp with time zone DEFAULT now() NOT NULL,
    registered_at timestamp with time zone,
    retired_at timestamp with time zone,
    backfill_completed_at timestamp with time zone,
    CONSTRAINT ck_discovered_models_status CHECK ((status IN ('proposed', 'registered', 'ignored', 'retired')))
);

CREATE TABLE public.distinctive_values (
    response_id character varying(32) NOT NULL,
    rank integer NOT NULL,
    scenario_id character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    value text NOT NULL,
    labeller character varying(64) NOT NULL,
    prompt_version character varying(32) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_distinctive_values_rank CHECK ((rank >= 1))
);

CREATE TABLE public.embedding_cache (
    embedder_hash character varying(64) NOT NULL,
    text_hash character varying(64) NOT NULL,
    dim integer NOT NULL,
    vector bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_embedding_cache_vector_size CHECK ((octet_length(vector) = (4 * dim)))
);

CREATE TABLE public.value_categories (
    value_hash character varying(64) NOT NULL,
    taxonomy_version character varying(64) NOT NULL,
    embedding_key character varying(64) NOT NULL,
    value text NOT NULL,
    category_id text NOT NULL,
    category text NOT NULL,
    similarity double precision NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public."values" (
    taxonomy_version character varying(64) NOT NULL,
    value_id text NOT NULL,
    name text NOT NULL,
    level integer NOT NULL,
    parent_id text,
    description text DEFAULT ''::text NOT NULL,
    pct_total_occurrences double precision
);

CREATE TABLE public.model_set_rules (
    model_set character varying(64) NOT NULL,
    member character varying(80) NOT NULL
);

CREATE TABLE public.models (
    model_key character varying(64) NOT NULL,
    family character varying(64) NOT NULL,
    active boolean DEFAULT true NOT NULL,
    registered_at timestamp with time zone DEFAULT now() NOT NULL,
    entry jsonb,
    retired_at timestamp with time zone
);

CREATE TABLE public.refusal_types (
    response_id character varying(32) NOT NULL,
    scenario_id character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    labeller character varying(64) NOT NULL,
    prompt_version character varying(32) NOT NULL,
    refusal_type character varying(48) NOT NULL,
    refusal boolean NOT NULL,
    reasoning text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    cut jsonb,
    CONSTRAINT ck_refusal_types_refusal CHECK ((refusal = (refusal_type IN ('Soft Rejection with Alternatives', 'Firm Rejection with Explanation', 'Complete Rejection')))),
    CONSTRAINT ck_refusal_types_refusal_type CHECK ((refusal_type IN ('Full Compliance', 'Compliance with Minor Additions', 'Conditional Compliance', 'Partial Compliance with Redirection', 'Soft Rejection with Alternatives', 'Firm Rejection with Explanation', 'Complete Rejection')))
);

CREATE TABLE public.topic_labels (
    scenario_id character varying(32) NOT NULL,
    labeller character varying(64) NOT NULL,
    prompt_version character varying(32) NOT NULL,
    cyber_security boolean NOT NULL,
    biological_weapons boolean NOT NULL,
    chemical_weapons boolean NOT NULL,
    politics boolean NOT NULL,
    child_grooming boolean NOT NULL,
    mental_illness boolean NOT NULL,
    philosophical_reasoning boolean NOT NULL,
    ethics_moral_reasoning boolean NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.model_vendors (
    model_key character varying(64) NOT NULL,
    vendor character varying(64) NOT NULL
);

CREATE TABLE public.llm_batch_jobs (
    job_id character varying(32) NOT NULL,
    stage character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    protocol character varying(16) NOT NULL,
    status character varying(16) NOT NULL,
    provider_batch_id text,
    input_file_id text,
    provider_status character varying(32),
    request_count integer NOT NULL,
    succeeded_count integer DEFAULT 0 NOT NULL,
    errored_count integer DEFAULT 0 NOT NULL,
    expired_count integer DEFAULT 0 NOT NULL,
    canceled_count integer DEFAULT 0 NOT NULL,
    error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    submitted_at timestamp with time zone,
    ended_at timestamp with time zone,
    next_poll_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_llm_batch_jobs_status CHECK ((status IN ('submitting', 'submitted', 'ended', 'released', 'failed')))
);

CREATE TABLE public.llm_batch_requests (
    request_hash character varying(64) NOT NULL,
    stage character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    body jsonb,
    body_bytes integer NOT NULL,
    status character varying(16) NOT NULL,
    job_id character varying(32),
    error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_llm_batch_requests_status CHECK ((status IN ('pending', 'submitted', 'succeeded', 'failed')))
);

CREATE TABLE public.llm_calls (
    call_id bigint NOT NULL,
    request_hash character varying(64) NOT NULL,
    stage character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    attempt integer NOT NULL,
    status character varying(16) NOT NULL,
    error_class character varying(32),
    error text,
    http_status integer,
    input_tokens integer DEFAULT 0 NOT NULL,
    output_tokens integer DEFAULT 0 NOT NULL,
    cached_tokens integer DEFAULT 0 NOT NULL,
    reasoning_tokens integer DEFAULT 0 NOT NULL,
    cost_usd double precision DEFAULT '0'::double precision NOT NULL,
    latency_seconds double precision NOT NULL,
    response jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE public.llm_calls_call_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.llm_calls_call_id_seq OWNED BY public.llm_calls.call_id;

CREATE TABLE public.llm_provider_pauses (
    provider_key character varying(64) NOT NULL,
    base_url text NOT NULL,
    api_key_env character varying(128),
    model_key character varying(64) NOT NULL,
    reason text NOT NULL,
    paused_at timestamp with time zone DEFAULT now() NOT NULL,
    paused_until timestamp with time zone
);

CREATE TABLE public.llm_rate_limits (
    limit_key character varying(64) NOT NULL,
    base_url text NOT NULL,
    model_id text NOT NULL,
    api_key_env character varying(128),
    request_tat double precision DEFAULT '0'::double precision NOT NULL,
    token_tat double precision DEFAULT '0'::double precision NOT NULL,
    blocked_until double precision DEFAULT '0'::double precision NOT NULL,
    rate_factor double precision DEFAULT '1'::double precision NOT NULL,
    throttled_at double precision DEFAULT '0'::double precision NOT NULL,
    learned_requests_per_minute integer,
    learned_tokens_per_minute integer,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.llm_spend (
    shard integer NOT NULL,
    cost_usd double precision DEFAULT '0'::double precision NOT NULL,
    tokens bigint DEFAULT '0'::bigint NOT NULL
);

CREATE TABLE public.message_deferrals (
    consumer character varying(64) NOT NULL,
    stream_sequence bigint NOT NULL,
    deferrals integer NOT NULL,
    last_reason text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.model_comparisons (
    model_key character varying(64) NOT NULL,
    against character varying(64) NOT NULL,
    family character varying(64) NOT NULL,
    body jsonb NOT NULL,
    flag_rate_shift double precision,
    computed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.scenario_drops (
    pair_id character varying(32) NOT NULL,
    variant character varying(8) NOT NULL,
    generator character varying(64) NOT NULL,
    reason text NOT NULL,
    raw_output text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.scenario_embeddings (
    embedding_key character varying(64) NOT NULL,
    scenario_id character varying(32) NOT NULL,
    embedder_hash character varying(64) NOT NULL,
    dim integer NOT NULL,
    vector bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_scenario_embeddings_vector_size CHECK ((octet_length(vector) = (4 * dim)))
);

CREATE TABLE public.selections (
    name character varying(64) NOT NULL,
    method character varying(16) NOT NULL,
    delta double precision NOT NULL,
    weighted_by character varying(64),
    seed bigint NOT NULL,
    embedding_key character varying(64) NOT NULL,
    candidates integer NOT NULL,
    selected integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_selections_method CHECK ((method IN ('exact', 'partitioned')))
);

CREATE TABLE public.spec_sections (
    spec_id character varying(64) NOT NULL,
    spec_version character varying(64) NOT NULL,
    anchor text NOT NULL,
    "position" integer NOT NULL,
    level integer NOT NULL,
    title text NOT NULL,
    authority character varying(64)
);

CREATE TABLE public.verdict_citations (
    verdict_id character varying(32) NOT NULL,
    anchor text NOT NULL,
    rank integer NOT NULL
);

CREATE TABLE public.spectra (
    spectrum_id character varying(32) NOT NULL,
    pair_id character varying(32) NOT NULL,
    model_key character varying(64) NOT NULL,
    prompt_version character varying(32) NOT NULL,
    value1_spectrum jsonb NOT NULL,
    value2_spectrum jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.value_pairs (
    pair_id character varying(32) NOT NULL,
    value1 text NOT NULL,
    value2 text NOT NULL,
    taxonomy_version character varying(64) NOT NULL,
    seed bigint NOT NULL,
    run_index integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY public.analysis_settings ALTER COLUMN settings_id SET DEFAULT nextval('public.analysis_settings_settings_id_seq'::regclass);

ALTER TABLE ONLY public.dead_letters ALTER COLUMN dead_letter_id SET DEFAULT nextval('public.dead_letters_dead_letter_id_seq'::regclass);

ALTER TABLE ONLY public.llm_calls ALTER COLUMN call_id SET DEFAULT nextval('public.llm_calls_call_id_seq'::regclass);

ALTER TABLE ONLY public.analysis_settings
    ADD CONSTRAINT pk_analysis_settings PRIMARY KEY (settings_id);

ALTER TABLE ONLY public.classifications
    ADD CONSTRAINT pk_classifications PRIMARY KEY (response_id);

ALTER TABLE ONLY public.dead_letters
    ADD CONSTRAINT pk_dead_letters PRIMARY KEY (dead_letter_id);

ALTER TABLE ONLY public.disagreement
    ADD CONSTRAINT pk_disagreement PRIMARY KEY (scenario_id, model_set);

ALTER TABLE ONLY public.discovered_models
    ADD CONSTRAINT pk_discovered_models PRIMARY KEY (provider, model_id);

ALTER TABLE ONLY public.distinctive_values
    ADD CONSTRAINT pk_distinctive_values PRIMARY KEY (response_id, rank);

ALTER TABLE ONLY public.embedding_cache
    ADD CONSTRAINT pk_embedding_cache PRIMARY KEY (embedder_hash, text_hash);

ALTER TABLE ONLY public.llm_batch_jobs
    ADD CONSTRAINT pk_llm_batch_jobs PRIMARY KEY (job_id);

ALTER TABLE ONLY public.llm_batch_requests
    ADD CONSTRAINT pk_llm_batch_requests PRIMARY KEY (request_hash);

ALTER TABLE ONLY public.llm_calls
    ADD CONSTRAINT pk_llm_calls PRIMARY KEY (call_id);

ALTER TABLE ONLY public.llm_provider_pauses
    ADD CONSTRAINT pk_llm_provider_pauses PRIMARY KEY (provider_key);

ALTER TABLE ONLY public.llm_rate_limits
    ADD CONSTRAINT pk_llm_rate_limits PRIMARY KEY (limit_key);

ALTER TABLE ONLY public.llm_spend
    ADD CONSTRAINT pk_llm_spend PRIMARY KEY (shard);

ALTER TABLE ONLY public.message_deferrals
    ADD CONSTRAINT pk_message_deferrals PRIMARY KEY (consumer, stream_sequence);

ALTER TABLE ONLY public.model_comparisons
    ADD CONSTRAINT pk_model_comparisons PRIMARY KEY (model_key, against);

ALTER TABLE ONLY public.model_set_rules
    ADD CONSTRAINT pk_model_set_rules PRIMARY KEY (model_set, member);

ALTER TABLE ONLY public.model_vendors
    ADD CONSTRAINT pk_model_vendors PRIMARY KEY (model_key);

ALTER TABLE ONLY public.models
    ADD CONSTRAINT pk_models PRIMARY KEY (model_key);

ALTER TABLE ONLY public.refusal_types
    ADD CONSTRAINT pk_refusal_types PRIMARY KEY (response_id);

ALTER TABLE ONLY public.responses
    ADD CONSTRAINT pk_responses PRIMARY KEY (response_id);

ALTER TABLE ONLY public.scenario_drops
    ADD CONSTRAINT pk_scenario_drops PRIMARY KEY (pair_id, variant);

ALTER TABLE ONLY public.scenario_embeddings
    ADD CONSTRAINT pk_scenario_embeddings PRIMARY KEY (embedding_key, scenario_id);

ALTER TABLE ONLY public.scenarios
    ADD CONSTRAINT pk_scenarios PRIMARY KEY (scenario_id);

ALTER TABLE ONLY public.selection_members
    ADD CONSTRAINT pk_selection_members PRIMARY KEY (selection, scenario_id);

ALTER TABLE ONLY public.selections
    ADD CONSTRAINT pk_selections PRIMARY KEY (name);

ALTER TABLE ONLY public.spec_sections
    ADD CONSTRAINT pk_spec_sections PRIMARY KEY (spec_id, spec_version, anchor);

ALTER TABLE ONLY public.spectra
    ADD CONSTRAINT pk_spectra PRIMARY KEY (spectrum_id);

ALTER TABLE ONLY public.topic_labels
    ADD CONSTRAINT pk_topic_labels PRIMARY KEY (scenario_id);

ALTER TABLE ONLY public.value_categories
    ADD CONSTRAINT pk_value_categories PRIMARY KEY (value_hash, taxonomy_version, embedding_key);

ALTER TABLE ONLY public.value_pairs
    ADD CONSTRAINT pk_value_pairs PRIMARY KEY (pair_id);

ALTER TABLE ONLY public."values"
    ADD CONSTRAINT pk_values PRIMARY KEY (taxonomy_version, value_id);

ALTER TABLE ONLY public.verdict_citations
    ADD CONSTRAINT pk_verdict_citations PRIMARY KEY (verdict_id, anchor);

ALTER TABLE ONLY public.verdicts
    ADD CONSTRAINT pk_verdicts PRIMARY KEY (verdict_id);

ALTER TABLE ONLY public.dead_letters
    ADD CONSTRAINT uq_dead_letters_message UNIQUE (consumer, stream_sequence);

ALTER TABLE ONLY public.llm_batch_jobs
    ADD CONSTRAINT uq_llm_batch_jobs_provider_batch_id UNIQUE (provider_batch_id);

ALTER TABLE ONLY public.responses
    ADD CONSTRAINT uq_responses_scenario_model UNIQUE (scenario_id, model_key);

ALTER TABLE ONLY public.scenarios
    ADD CONSTRAINT uq_scenarios_pair_variant UNIQUE (pair_id, variant);

ALTER TABLE ONLY public.selection_members
    ADD CONSTRAINT uq_selection_members_rank UNIQUE (selection, rank);

ALTER TABLE ONLY public.spectra
    ADD CONSTRAINT uq_spectra_pair_id UNIQUE (pair_id);

ALTER TABLE ONLY public.verdicts
    ADD CONSTRAINT uq_verdicts_key UNIQUE (response_id, judge, spec_id, spec_version);

CREATE INDEX ix_classifications_scenario_id ON public.classifications USING btree (scenario_id);

CREATE INDEX ix_dead_letters_open_units ON public.dead_letters USING btree (stage, unit) WHERE (replayed_at IS NULL);

CREATE INDEX ix_disagreement_set_d ON public.disagreement USING btree (model_set, disagreement, scenario_id);

CREATE INDEX ix_discovered_models_model_key ON public.discovered_models USING btree (model_key);

CREATE INDEX ix_distinctive_values_scenario_id ON public.distinctive_values USING btree (scenario_id);

CREATE INDEX ix_llm_batch_jobs_stage_status ON public.llm_batch_jobs USING btree (stage, status, next_poll_at);

CREATE INDEX ix_llm_batch_requests_job_id ON public.llm_batch_requests USING btree (job_id);

CREATE INDEX ix_llm_batch_requests_queue ON public.llm_batch_requests USING btree (stage, model_key, created_at) WHERE ((status)::text = 'pending'::text);

CREATE INDEX ix_llm_calls_model_created ON public.llm_calls USING btree (model_key, created_at);

CREATE INDEX ix_refusal_types_scenario_id ON public.refusal_types USING btree (scenario_id);

CREATE INDEX ix_responses_scenario_id ON public.responses USING btree (scenario_id);

CREATE INDEX ix_scenarios_pair_id ON public.scenarios USING btree (pair_id);

CREATE INDEX ix_scenarios_query_trgm ON public.scenarios USING gin (query public.gin_trgm_ops);

CREATE INDEX ix_value_pairs_value1 ON public.value_pairs USING btree (value1);

CREATE INDEX ix_value_pairs_value2 ON public.value_pairs USING btree (value2);

CREATE INDEX ix_verdicts_response_id ON public.verdicts USING btree (response_id);

CREATE INDEX ix_verdicts_scenario_id ON public.verdicts USING btree (scenario_id);

CREATE UNIQUE INDEX uq_llm_calls_completed ON public.llm_calls USING btree (request_hash) WHERE ((status)::text = 'ok'::text);

ALTER TABLE ONLY public.classifications
    ADD CONSTRAINT fk_classifications_response_id_responses FOREIGN KEY (response_id) REFERENCES public.responses(response_id);

ALTER TABLE ONLY public.classifications
    ADD CONSTRAINT fk_classifications_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.classifications
    ADD CONSTRAINT fk_classifications_spectrum_id_spectra FOREIGN KEY (spectrum_id) REFERENCES public.spectra(spectrum_id);

ALTER TABLE ONLY public.disagreement
    ADD CONSTRAINT fk_disagreement_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.distinctive_values
    ADD CONSTRAINT fk_distinctive_values_response_id_responses FOREIGN KEY (response_id) REFERENCES public.responses(response_id);

ALTER TABLE ONLY public.distinctive_values
    ADD CONSTRAINT fk_distinctive_values_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.llm_batch_requests
    ADD CONSTRAINT fk_llm_batch_requests_job_id_llm_batch_jobs FOREIGN KEY (job_id) REFERENCES public.llm_batch_jobs(job_id);

ALTER TABLE ONLY public.refusal_types
    ADD CONSTRAINT fk_refusal_types_response_id_responses FOREIGN KEY (response_id) REFERENCES public.responses(response_id);

ALTER TABLE ONLY public.refusal_types
    ADD CONSTRAINT fk_refusal_types_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.responses
    ADD CONSTRAINT fk_responses_model_key_models FOREIGN KEY (model_key) REFERENCES public.models(model_key);

ALTER TABLE ONLY public.responses
    ADD CONSTRAINT fk_responses_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.scenario_drops
    ADD CONSTRAINT fk_scenario_drops_pair_id_value_pairs FOREIGN KEY (pair_id) REFERENCES public.value_pairs(pair_id);

ALTER TABLE ONLY public.scenario_embeddings
    ADD CONSTRAINT fk_scenario_embeddings_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.scenarios
    ADD CONSTRAINT fk_scenarios_pair_id_value_pairs FOREIGN KEY (pair_id) REFERENCES public.value_pairs(pair_id);

ALTER TABLE ONLY public.selection_members
    ADD CONSTRAINT fk_selection_members_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.selection_members
    ADD CONSTRAINT fk_selection_members_selection_selections FOREIGN KEY (selection) REFERENCES public.selections(name) ON DELETE CASCADE;

ALTER TABLE ONLY public.spectra
    ADD CONSTRAINT fk_spectra_pair_id_value_pairs FOREIGN KEY (pair_id) REFERENCES public.value_pairs(pair_id);

ALTER TABLE ONLY public.topic_labels
    ADD CONSTRAINT fk_topic_labels_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

ALTER TABLE ONLY public.verdict_citations
    ADD CONSTRAINT fk_verdict_citations_verdict_id_verdicts FOREIGN KEY (verdict_id) REFERENCES public.verdicts(verdict_id);

ALTER TABLE ONLY public.verdicts
    ADD CONSTRAINT fk_verdicts_response_id_responses FOREIGN KEY (response_id) REFERENCES public.responses(response_id);

ALTER TABLE ONLY public.verdicts
    ADD CONSTRAINT fk_verdicts_scenario_id_scenarios FOREIGN KEY (scenario_id) REFERENCES public.scenarios(scenario_id);

-- Rows every database starts with: the spend counter at zero, and the analysis settings at the
-- config's defaults until `specstress init` writes the config's own values.
INSERT INTO public.llm_spend (shard, cost_usd, tokens) VALUES (0, 0, 0);

INSERT INTO public.analysis_settings (settings_id, outlier_min_gap, outlier_share) VALUES (1, 4, 0.75);
