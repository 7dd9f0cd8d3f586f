import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { MODEL_EXAMPLE } from './embeddings.dto';

/** text-embeddings-inference's model_type: `{embedding: {pooling}}` or `{reranker: {head}}`. */
export class InfoModelTypeDto {
  @ApiPropertyOptional({
    description: "An embedding model: its pooling, in TEI's words (`last_token`, `cls`, `mean`).",
    example: { pooling: 'last_token' },
  })
  embedding?: { pooling: string };

  @ApiPropertyOptional({
    description: 'A reranker: its score head (`yes-no`, `classifier`).',
    example: { head: 'yes-no' },
  })
  reranker?: { head: string };
}

/** One served model and its layout. */
export class InfoModelDto {
  @ApiProperty({ example: MODEL_EXAMPLE })
  id!: string;

  @ApiProperty({ enum: ['embed', 'rerank'] })
  task!: 'embed' | 'rerank';

  @ApiProperty({ enum: ['float32', 'bfloat16', 'float16'] })
  dtype!: string;

  @ApiProperty({ enum: ['cpu', 'cuda'] })
  device!: string;

  @ApiProperty({ description: 'GPUs per replica.' })
  tensor_parallel_size!: number;

  @ApiProperty({ description: 'Replicas, one batch in flight each.' })
  replicas!: number;

  @ApiProperty({ description: 'Per-input token limit.' })
  max_input_length!: number;

  @ApiProperty({
    type: [String],
    description:
      'Every other name requests may use: SERVED_MODEL_NAME, the directory names, and the prompt aliases.',
  })
  aliases!: string[];
}

/** GET /info: text-embeddings-inference's shape, plus `models`. */
export class InfoDto {
  @ApiProperty({ example: MODEL_EXAMPLE, description: 'The served id.' })
  model_id!: string;

  @ApiProperty({
    type: String,
    nullable: true,
    description: 'Always null: checkpoints are served from a directory.',
  })
  model_sha!: null;

  @ApiProperty({ enum: ['float32', 'bfloat16', 'float16'] })
  model_dtype!: string;

  @ApiProperty({ type: InfoModelTypeDto })
  model_type!: InfoModelTypeDto;

  @ApiProperty({ description: 'Per-input token limit (MAX_INPUT_TOKENS, lowered to what the model allows).' })
  max_input_length!: number;

  @ApiProperty({ description: 'Tokens per forward batch (MAX_BATCH_TOKENS).' })
  max_batch_tokens!: number;

  @ApiProperty({ description: 'Sequences per forward batch (BATCH_SIZE).' })
  max_batch_requests!: number;

  @ApiProperty({ description: 'Inputs per request.' })
  max_client_batch_size!: number;

  @ApiProperty({ description: 'AUTO_TRUNCATE.' })
  auto_truncate!: boolean;

  @ApiProperty({ description: "The server's version (package.json)." })
  version!: string;

  @ApiProperty({ description: "The server's commit, or 'unknown' outside a checkout." })
  sha!: string;

  @ApiProperty({ type: [InfoModelDto] })
  models!: InfoModelDto[];
}
